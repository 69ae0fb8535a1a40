import {
  type ExpandedPluginConfiguration,
  type NxJsonConfiguration,
  type PluginConfiguration,
  type Tree,
  readNxJson,
  updateNxJson,
  writeJson,
} from '@nx/devkit';
import { SHIELDED_EXECUTORS } from '../../lib/cache-identity/target-defaults-guard';
import { formatFilesKeepingModes } from '../generator-utils';
import type { InitGeneratorSchema } from './schema';

/** The name nx.json uses to load the plugin: the npm package name. */
export const VMLB_PLUGIN = 'vmlb';

/**
 * .gitignore lines that already keep `dist/` (where layer disks are built)
 * out of git. Anything subtler (`dist*`, `/dist/**`) is not recognised, and
 * then a plain `dist` line is added beside it, which does no harm.
 */
const DIST_IGNORE_LINES = new Set(['dist', 'dist/', '/dist', '/dist/', '**/dist', '**/dist/']);

interface NormalizedInitOptions {
  skipFormat: boolean;
}

function normalizeOptions(options: InitGeneratorSchema): NormalizedInitOptions {
  return { skipFormat: options.skipFormat ?? false };
}

/** `nx g vmlb:init` (and `nx add vmlb`): registers the plugin, keeps target defaults off its targets, ignores its outputs. Idempotent. */
export async function initGenerator(tree: Tree, schema: InitGeneratorSchema = {}): Promise<void> {
  const options = normalizeOptions(schema);
  registerPlugin(tree);
  shieldFromTargetDefaults(tree);
  ignoreBuildOutputs(tree);
  if (!options.skipFormat) await formatFilesKeepingModes(tree);
}

export default initGenerator;

export function isVmlbPluginEntry(entry: PluginConfiguration): boolean {
  return typeof entry === 'string' ? entry === VMLB_PLUGIN : entry.plugin === VMLB_PLUGIN;
}

function registerPlugin(tree: Tree): void {
  const entry: ExpandedPluginConfiguration = { plugin: VMLB_PLUGIN, options: {} };
  const nxJson = readNxJson(tree);
  if (!nxJson) {
    // updateNxJson silently does nothing without an nx.json; a workspace
    // that has none yet still needs one for Nx to load the plugin.
    const created: NxJsonConfiguration = { $schema: './node_modules/nx/schemas/nx-schema.json', plugins: [entry] };
    writeJson(tree, 'nx.json', created);
    return;
  }
  // An entry the user wrote (a bare "vmlb", or one with options or
  // include/exclude) is theirs: keep it as it is.
  if (nxJson.plugins?.some(isVmlbPluginEntry)) return;
  updateNxJson(tree, { ...nxJson, plugins: [...(nxJson.plugins ?? []), entry] });
}

/**
 * An empty targetDefaults entry per vmlb executor: Nx prefers it to a
 * target name's entry, so the workspace's `build` defaults (dependsOn,
 * inputs, cache) never replace what vmlb infers. Entries the user wrote stay.
 */
function shieldFromTargetDefaults(tree: Tree): void {
  const nxJson = readNxJson(tree);
  if (!nxJson) return;
  const targetDefaults = { ...(nxJson.targetDefaults ?? {}) };
  const missing = SHIELDED_EXECUTORS.filter((executor) => !(executor in targetDefaults));
  if (missing.length === 0) return;
  missing.forEach((executor) => (targetDefaults[executor] = {}));
  updateNxJson(tree, { ...nxJson, targetDefaults });
}

function ignoreBuildOutputs(tree: Tree): void {
  const current = tree.read('.gitignore', 'utf-8') ?? '';
  if (current.split(/\r?\n/).some((line) => DIST_IGNORE_LINES.has(line.trim()))) return;
  const separator = current === '' || current.endsWith('\n') ? '' : '\n';
  tree.write('.gitignore', `${current}${separator}dist\n`);
}
