#!/usr/bin/env node
// Rebuilding images/prod's 20_packages (apt-get update, then cloud-init,
// nginx and curl with their dependencies) with its apt cache mount
// (`# cache-mount /var/cache/apt/archives`) warm, against cold. Both sides
// run the layer's own script through lib/layer-build (what the layer
// executor runs, without Nx) on a fresh overlay of the same parent
// (10_update), each with a cache folder of its own: the cold side's is
// emptied before each of its runs, the warm side's was filled by one untimed
// run first. Both download the package lists (apt-get update); only the
// cold side downloads the packages. Network-bound: the figures depend on the
// mirror and the link as much as on vmlb. The sides take turns, RUNS
// (default 3) runs each. The scripts' output (apt's) goes to a log file, so
// that only the table reaches the terminal.
//
// Usage: node tools/bench/cache-mount.mjs [path/to/parent.qcow2] [path/to/layer folder]
//        (default dist/images/prod/10_update.qcow2 and images/prod/20_packages:
//        npx nx build image-prod first)
import { execFileSync, fork } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { chainScratch, median, plugin, repo, runs as runsOr, spread, takeTurns } from './lib.mjs';

const [parentArgument, layerArgument] = process.argv.slice(2).filter((argument) => argument !== '--measure');
const top = path.resolve(parentArgument ?? path.join(repo, 'dist/images/prod/10_update.qcow2'));
const layerSource = path.resolve(layerArgument ?? path.join(repo, 'images/prod/20_packages'));

if (!process.argv.includes('--measure')) {
  if (!existsSync(top)) {
    console.error(`${top} does not exist: build the chain first (npx nx build image-prod), or give the parent to build on.`);
    process.exit(1);
  }
  // The measuring process writes the scripts' output to a log; its results come back as a message.
  const log = path.join(path.dirname(path.dirname(top)), `cache-mount-bench-${process.pid}.log`);
  const child = fork(new URL(import.meta.url).pathname, ['--measure', top, layerSource], { stdio: ['ignore', openSync(log, 'w'), openSync(log, 'a'), 'ipc'] });
  let result;
  child.on('message', (message) => (result = message));
  const code = await new Promise((resolve) => child.on('exit', (exitCode) => resolve(exitCode ?? 1)));
  if (code !== 0 || !result) {
    console.error(`The benchmark failed (exit ${code}); the builds' output is in ${log}:\n${readFileSync(log, 'utf8').split('\n').slice(-30).join('\n')}`);
    process.exit(1);
  }
  rmSync(log, { force: true });
  printTable(result);
  process.exit(0);
}

const { buildLayer } = plugin('lib/build/layer-build');
const { parseHints } = plugin('lib/image/hints');

const runs = runsOr(3);
const { dir: work, parent, cleanup } = chainScratch(top, '.bench-cache-mount-');
try {
  const layer = path.basename(layerSource);
  const layerDir = path.join(work, 'layers', layer);
  mkdirSync(path.dirname(layerDir), { recursive: true });
  cpSync(layerSource, layerDir, { recursive: true });
  const script = path.join(layerDir, 'build-layer');
  const hints = parseHints(readFileSync(script, 'utf8'), script, 'build-layer');
  if (!hints.cacheMounts?.length) throw new Error(`${path.relative(repo, layerSource)}/build-layer has no # cache-mount hint: there is nothing to compare.`);
  const side = (name) => {
    const cacheMountsRoot = path.join(work, `caches-${name}`);
    const plan = { workspaceRoot: repo, imageName: 'bench', layer, layerDir, script, kind: 'build-layer', hints, parent, cacheMountsRoot };
    return { cacheMountsRoot, plan: { ...plan, output: path.join(work, `${layer}-${name}.qcow2`) } };
  };
  const cold = side('cold');
  const warm = side('warm');
  const build = async ({ plan }) => {
    rmSync(plan.output, { force: true });
    await buildLayer(plan, (line) => console.log(line));
  };
  const runCold = async () => {
    rmSync(cold.cacheMountsRoot, { recursive: true, force: true });
    await build(cold);
  };
  await build(warm);
  const { baseline: coldTimes, candidate: warmTimes } = await takeTurns(runs, runCold, () => build(warm));
  const written = (overlay) => JSON.parse(execFileSync('qemu-img', ['info', '--output=json', overlay], { encoding: 'utf8' }))['actual-size'];
  const cacheBytes = Number(execFileSync('du', ['-sb', warm.cacheMountsRoot], { encoding: 'utf8' }).split('\t')[0]);
  process.send({
    runs,
    parent: path.relative(repo, top),
    layer: path.relative(repo, layerSource),
    coldTimes,
    warmTimes,
    coldBytes: written(cold.plan.output),
    warmBytes: written(warm.plan.output),
    cacheBytes,
  });
} finally {
  cleanup();
}

function printTable(result) {
  const mib = (bytes) => (bytes / 2 ** 20).toFixed(1);
  console.log(`parent: ${result.parent}; layer: ${result.layer}; ${result.runs} runs each, taking turns`);
  console.log(
    '\n| rebuild of the layer | baseline: cold cache mount, s | warm cache mount, s | ratio of medians | overlay written (cold / warm), MiB | apt cache, MiB |',
  );
  console.log('| --- | --- | --- | --- | --- | --- |');
  console.log(
    `| ${path.basename(result.layer)} | ${spread(result.coldTimes)} | ${spread(result.warmTimes)} | ${(median(result.warmTimes) / median(result.coldTimes)).toFixed(3)}× | ` +
      `${mib(result.coldBytes)} / ${mib(result.warmBytes)} | ${mib(result.cacheBytes)} |`,
  );
}
