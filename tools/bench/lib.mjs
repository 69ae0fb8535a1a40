// Shared by the node benchmarks: where the compiled plugin is, which chain
// to measure on, a scratch folder that goes away on exit or Ctrl-C, and the
// statistics every result table prints.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';

export const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');

const require = createRequire(import.meta.url);
/** A module of the compiled plugin (npm run build), e.g. `lib/layer-build`. */
export const plugin = (module) => require(path.join(repo, 'packages/vmlb/dist', `${module}.js`));

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

export const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};
export const seconds = (ms) => (ms / 1000).toFixed(2);
/** `median (min–max)` in seconds, from milliseconds. */
export const spread = (values) => `${seconds(median(values))} (${seconds(Math.min(...values))}–${seconds(Math.max(...values))})`;
