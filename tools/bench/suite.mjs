#!/usr/bin/env node
// `npm run bench [-- <name>...]`: vmlb's benchmarks, one after the other,
// each printing its own table (medians of RUNS runs, default 5, with min and
// max, and ratios against a baseline measured in the same run). The chains
// they measure on must be built first: `npx nx run-many -t build -p image-tiny image-tiny-boot image-prod`
// (the suite says so when one is missing).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { repo } from './lib.mjs';

const benchmarks = {
  'layer-overhead': { script: 'layer-overhead.mjs', needs: 'dist/images/tiny/20_motd.qcow2', what: 'an empty layer against the bare attach/chroot/detach sequence' },
  'nx-builds': { script: 'nx-builds.mjs', what: 'incremental against full rebuild; no-op build with the Nx daemon off and on' },
  flatten: { script: 'flatten.mjs', needs: 'dist/images/prod/50_cleanup.qcow2', what: 'flatten against a bare qemu-img convert' },
  'test-boot': { script: 'test-boot.mjs', needs: 'dist/images/tiny-boot/image.qcow2', what: 'test-boot --check against the bare qemu command to the same marker' },
  'layer-manifest': { script: 'layer-manifest.mjs', needs: 'dist/images/prod/50_cleanup.qcow2', what: "what the layer manifest costs on a Debian root" },
  'virt-customize': { script: 'virt-customize.mjs', needs: 'dist/images/prod/50_cleanup.qcow2', what: 'the same two layers built by virt-customize --run (libguestfs)' },
};

const asked = process.argv.slice(2);
for (const name of asked) {
  if (!(name in benchmarks)) {
    console.error(`No benchmark '${name}'. Benchmarks: ${Object.keys(benchmarks).join(', ')}.`);
    process.exit(2);
  }
}
const selected = asked.length ? asked : Object.keys(benchmarks);
const missing = selected.filter((name) => benchmarks[name].needs && !existsSync(path.join(repo, benchmarks[name].needs)));
if (missing.length) {
  console.error(
    `${missing.map((name) => `${name} needs ${benchmarks[name].needs}`).join('; ')}. Build the chains first: npx nx run-many -t build -p image-tiny image-tiny-boot image-prod`,
  );
  process.exit(1);
}

const started = Date.now();
const failed = [];
for (const name of selected) {
  console.log(`\n## ${name}: ${benchmarks[name].what}\n`);
  const benchmarkStarted = Date.now();
  const result = spawnSync(process.execPath, [path.join(repo, 'tools/bench', benchmarks[name].script)], { stdio: 'inherit', env: { RUNS: '5', ...process.env } });
  if (result.status !== 0) failed.push(name);
  console.log(`\n(${name}: ${Math.round((Date.now() - benchmarkStarted) / 1000)} s)`);
}
console.log(`\nsuite: ${selected.length} benchmarks in ${((Date.now() - started) / 60000).toFixed(1)} min${failed.length ? `; failed: ${failed.join(', ')}` : ''}`);
process.exit(failed.length ? 1 : 0);
