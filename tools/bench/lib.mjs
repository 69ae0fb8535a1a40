// Shared by the node benchmarks: where the compiled plugin is, which chain
// to measure on, a scratch folder that goes away on exit or Ctrl-C, and the
// statistics every result table prints.
import { spawnSync } from 'node:child_process';
import { existsSync, linkSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';

export const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');

const require = createRequire(import.meta.url);
/** A module of the compiled plugin (npm run build), e.g. `lib/build/layer-build`; stops at once, naming it, when its source moved. */
export const plugin = (module) => {
  const source = path.join(repo, 'packages/vmlb/src', `${module}.ts`);
  if (!existsSync(source)) {
    throw new Error(
      `tools/bench: packages/vmlb/src/${module}.ts does not exist: the module moved or was renamed; update the benchmark that loads '${module}'.`,
    );
  }
  return require(path.join(repo, 'packages/vmlb/dist', `${module}.js`));
};

/** Nx's CLI, run with node (no npx in between). */
export const nxBin = path.join(repo, 'node_modules/nx/dist/bin/nx.js');

/** The environment every benchmark runs nx in: plain output, no Nx Cloud, and no remote cache of the user's. */
export const nxEnv = { ...process.env, NX_TUI: 'false', NX_NO_CLOUD: 'true', FORCE_COLOR: '0' };
delete nxEnv.NX_SELF_HOSTED_REMOTE_CACHE_SERVER;

/** Runs nx in `cwd` to its end; its time in ms and its output. Throws with the output when nx fails. */
export function nxSync(cwd, args, env = {}) {
  const started = process.hrtime.bigint();
  const result = spawnSync(process.execPath, [nxBin, ...args], { cwd, env: { ...nxEnv, ...env }, encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  if (result.status !== 0) throw new Error(`nx ${args.join(' ')} failed in ${cwd}:\n${result.stdout}${result.stderr}`);
  return { ms, output: result.stdout + result.stderr };
}

export const runs = (fallback) => Number(process.env.RUNS ?? fallback);

/** The top of the chain to measure on: the first argument, else images/prod's last layer. Exits when it is missing. */
export function chainArgument() {
  const top = path.resolve(process.argv[2] ?? path.join(repo, 'dist/images/prod/50_cleanup.qcow2'));
  if (!existsSync(top)) {
    console.error(`${top} does not exist: build the chain first (npx nx build image-prod), or give the top of another chain.`);
    process.exit(1);
  }
  return top;
}

/** A scratch folder in `parent` (the chain's filesystem), removed by `cleanup()` and on Ctrl-C. */
export function scratchFolder(parent, prefix) {
  const dir = mkdtempSync(path.join(parent, prefix));
  const cleanup = () => rmSync(dir, { recursive: true, force: true });
  process.on('SIGINT', () => {
    cleanup();
    process.exit(130);
  });
  return { dir, cleanup };
}

/**
 * A scratch folder beside the chain that ends in `top`, holding hard links to
 * its layer files, digests and stored listings (same filesystem): overlays
 * built on it are written there, and dist/ stays as it is. A layer built on
 * `top` starts from top's stored listing, as the next layer of a real build
 * does. Returns the folder, the parent to build on, and `cleanup()`.
 */
export function chainScratch(top, prefix) {
  const chainDir = path.dirname(top);
  const { dir, cleanup } = scratchFolder(path.dirname(chainDir), prefix);
  for (const name of readdirSync(chainDir).filter((file) => /\.(qcow2|digest|snapshot\.json\.gz)$/.test(file) && file !== 'image.qcow2')) {
    linkSync(path.join(chainDir, name), path.join(dir, name));
  }
  return { dir, parent: path.join(dir, path.basename(top)), cleanup };
}

/** Milliseconds `work` (sync or async) takes. */
export async function timed(work) {
  const started = process.hrtime.bigint();
  await work();
  return Number(process.hrtime.bigint() - started) / 1e6;
}

/**
 * `runs` timed runs of each side, taking turns on which goes first (on this
 * machine the second of two back-to-back runs is often the slower one).
 */
export async function takeTurns(runs, baseline, candidate) {
  const times = { baseline: [], candidate: [] };
  for (let run = 0; run < runs; run++) {
    const sides = [async () => times.baseline.push(await timed(baseline)), async () => times.candidate.push(await timed(candidate))];
    if (run % 2) sides.reverse();
    for (const side of sides) await side();
  }
  return times;
}

export const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};
export const seconds = (ms) => (ms / 1000).toFixed(2);
/** `median (min–max)` in seconds, from milliseconds. */
export const spread = (values) => `${seconds(median(values))} (${seconds(Math.min(...values))}–${seconds(Math.max(...values))})`;
