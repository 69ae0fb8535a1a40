import { existsSync, lstatSync, readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import type { ScriptKind } from '../../lib/image/hints';

/** A file of the checkout to import, relative to the folder being imported (a layer folder, test-boot/). */
export interface SeedFile {
  relative: string;
  absolute: string;
  /** Permission bits, e.g. 0o755. */
  mode: number;
  /** Only regular files can be imported; the rest are reported. */
  type: 'file' | 'symlink' | 'empty folder' | 'special file';
}

export interface SeedLayer {
  /** The folder's name in the checkout, e.g. `05_resize`. */
  folder: string;
  /** The script the original ran: build-layer when a folder has both. */
  kind: ScriptKind;
  /** The script the original ignored, when the folder has both. */
  ignored?: ScriptKind;
  files: SeedFile[];
}

export interface SeedCheckout {
  root: string;
  sconstruct: string;
  /** In the original's order: by name. */
  layers: SeedLayer[];
  /** Folders named like layers with no script, which the original skipped. */
  skipped: string[];
  /** Folders at the root that are neither layers nor the original's own (bin/, site_scons/, build/, ...). */
  others: string[];
  /** test-boot/'s files. */
  testBoot: SeedFile[];
  /** bin/test-boot, which names the guest's memory. */
  testBootScript?: string;
  /** site_scons/s3_cache.py exists: layers were shared through S3. */
  s3Cache: boolean;
}

/** The original's rule for a layer folder: two or more digits and an underscore at the start. */
const SEED_LAYER_FOLDER = /^[0-9]{2,}_/;
/** The original's own folders: the tool, its build output and its cache, and the test-boot seed. */
const TOOL_FOLDERS = new Set(['bin', 'site_scons', 'doc', 'build', 'build_cache', 'test-boot']);

/** Reads a checkout of the original as its SConstruct would see it; refuses a folder that is not one, saying what to give instead. */
export function readCheckout(root: string): SeedCheckout {
  if (!existsSync(root) || !statSync(root).isDirectory()) {
    throw new Error(`${root} is not a folder. Give the folder of a vm-layer-builder checkout: the one with SConstruct and the NN_name layer folders.`);
  }
  const sconstructPath = path.join(root, 'SConstruct');
  if (!existsSync(sconstructPath)) {
    throw new Error(
      `${root} has no SConstruct, so it is not a vm-layer-builder checkout. Give the checkout's top folder (with SConstruct, bin/ and the NN_name layer folders).`,
    );
  }
  const entries = readdirSync(root, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const layers: SeedLayer[] = [];
  const skipped: string[] = [];
  const others: string[] = [];
  for (const entry of entries) {
    if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
    if (!SEED_LAYER_FOLDER.test(entry.name)) {
      if (!TOOL_FOLDERS.has(entry.name)) others.push(entry.name);
      continue;
    }
    const folder = path.join(root, entry.name);
    const has = (kind: ScriptKind) => existsSync(path.join(folder, kind)) && statSync(path.join(folder, kind)).isFile();
    const kind: ScriptKind | undefined = has('build-layer') ? 'build-layer' : has('modify-disk') ? 'modify-disk' : undefined;
    if (!kind) {
      skipped.push(entry.name);
      continue;
    }
    layers.push({ folder: entry.name, kind, ignored: kind === 'build-layer' && has('modify-disk') ? 'modify-disk' : undefined, files: filesIn(folder) });
  }
  if (!layers.length) {
    throw new Error(
      `${root} has no layer folders: folders named NN_name (two or more digits, '_', a name) holding a build-layer or modify-disk script. Give the checkout's top folder.`,
    );
  }
  const testBootDir = path.join(root, 'test-boot');
  const testBootScript = path.join(root, 'bin', 'test-boot');
  return {
    root,
    sconstruct: readFileSync(sconstructPath, 'utf8'),
    layers,
    skipped,
    others,
    testBoot: existsSync(testBootDir) && statSync(testBootDir).isDirectory() ? filesIn(testBootDir) : [],
    testBootScript: existsSync(testBootScript) ? readFileSync(testBootScript, 'utf8') : undefined,
    s3Cache: existsSync(path.join(root, 'site_scons', 's3_cache.py')),
  };
}

/** Every file under a folder, sorted, with what the import needs to know of each. */
function filesIn(folder: string, prefix = ''): SeedFile[] {
  const files: SeedFile[] = [];
  const names = readdirSync(path.join(folder, prefix)).sort();
  for (const name of names) {
    const relative = path.posix.join(prefix, name);
    const absolute = path.join(folder, relative);
    const stat = lstatSync(absolute);
    const mode = stat.mode & 0o7777;
    if (stat.isDirectory()) {
      const inside = filesIn(folder, relative);
      files.push(...(inside.length ? inside : [{ relative, absolute, mode, type: 'empty folder' as const }]));
    } else if (stat.isSymbolicLink()) files.push({ relative, absolute, mode, type: 'symlink' });
    else if (stat.isFile()) files.push({ relative, absolute, mode, type: 'file' });
    else files.push({ relative, absolute, mode, type: 'special file' });
  }
  return files;
}

/** A layer folder's name in vmlb, and why it differs from the original's when it does. */
export interface LayerName {
  folder: string;
  why?: string;
}

/**
 * vmlb's names for the checkout's layer folders, in the original's order.
 * The original ran layers in the order of their names and accepted any name
 * after `NN_`; vmlb runs them by number, one layer per number, and takes
 * letters, digits, '.', '_' and '-' in a name. A layer whose number would
 * put it out of the original's order, or share a number, gets the next one.
 */
export function vmlbLayerNames(folders: string[]): LayerName[] {
  let previous = -1;
  return folders.map((folder) => {
    const match = /^([0-9]+)_(.*)$/.exec(folder)!;
    const name = match[2].replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '') || 'layer';
    let number = Number(match[1]);
    const whys: string[] = [];
    if (name !== match[2]) whys.push(`vmlb's layer names hold only letters, digits, '.', '_' and '-'.`);
    if (number <= previous) {
      whys.push(
        `the original ran its layers in the order of their names, and vmlb runs them by number, one layer per number: ${previous + 1} keeps this layer after the one before it.`,
      );
      number = previous + 1;
    }
    previous = number;
    const renamed = `${String(number).padStart(match[1].length, '0')}_${name}`;
    return whys.length ? { folder: renamed, why: `renamed from ${folder}: ${whys.join(' ')}` } : { folder };
  });
}
