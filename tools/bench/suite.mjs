#!/usr/bin/env node
// `npm run bench [-- <name>...]`: vmlb's benchmarks, one after the other,
// each printing its own table (medians of RUNS runs, default 5 or the
// benchmark's own default, with min and max, and ratios against a baseline
// measured in the same run). It first builds the images the selected
// benchmarks measure on (cache hits when they are built already), and
// checks the tools they compare against before any benchmark starts.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { nxBin, repo } from './lib.mjs';

// images: the images whose chains in dist/ it measures on; tool: a command it compares against.
const benchmarks = {
  'layer-overhead': {
    script: 'layer-overhead.mjs',
    images: ['tiny', 'prod'],
    what: 'an empty layer on a busybox and a Debian chain against the bare attach/chroot/detach sequence',
  },
  'prod-builds': {
    script: 'prod-builds.mjs',
    images: ['prod'],
    what: "images/prod through nx: no-op build against nx show projects, one layer task split at Nx's and the executor's moments, incremental build after an app edit",
  },
  'nx-builds': { script: 'nx-builds.mjs', what: 'incremental against full rebuild; no-op build with the Nx daemon off and on' },
  flatten: { script: 'flatten.mjs', images: ['prod'], what: 'flatten against a bare qemu-img convert' },
  'test-boot': { script: 'test-boot.mjs', images: ['tiny-boot'], what: 'test-boot --check against the bare qemu command to the same marker' },
  // runs: its own default when RUNS is not given (a run of this one is two boots of a Debian guest, about two minutes).
  'edit-to-boot': {
    script: 'edit-to-boot.mjs',
    images: ['prod'],
    runs: 3,
    what: "images/prod's app edited, built and boot-checked over ssh, against the bare qemu boot to login:",
  },
  'layer-manifest': { script: 'layer-manifest.mjs', images: ['prod'], what: 'what the layer manifest costs on a Debian root' },
  restore: {
    script: 'restore.mjs',
    images: ['prod'],
    what: "restoring images/prod's chain from Nx's local cache after rm -rf, and a big layer in blob mode, against cp of the same files",
  },
  'cache-mount': { script: 'cache-mount.mjs', images: ['prod'], what: "rebuilding images/prod's 20_packages with its apt cache mount warm against cold" },
  'virt-customize': {
    script: 'virt-customize.mjs',
    images: ['prod'],
    tool: { command: 'virt-customize', install: 'tools/setup.sh --bench (libguestfs-tools, and linux-image-amd64 for its appliance)' },
    what: 'the same two layers built by virt-customize --run (libguestfs)',
  },
};

const asked = process.argv.slice(2);
for (const name of asked) {
  if (!(name in benchmarks)) {
    console.error(`No benchmark '${name}'. Benchmarks: ${Object.keys(benchmarks).join(', ')}.`);
    process.exit(2);
  }
}
const selected = asked.length ? asked : Object.keys(benchmarks);
const missingTools = selected.filter(
  (name) => benchmarks[name].tool && spawnSync('sh', ['-c', `command -v ${benchmarks[name].tool.command}`], { stdio: 'ignore' }).status !== 0,
);
if (missingTools.length) {
  console.error(
    missingTools
      .map((name) => `${name} compares against ${benchmarks[name].tool.command}, which is not installed: ${benchmarks[name].tool.install}.`)
      .join('\n') +
      `\nInstall it, or leave ${missingTools.length > 1 ? 'them' : 'it'} out: npm run bench -- ${selected.filter((name) => !missingTools.includes(name)).join(' ')}`,
  );
  process.exit(1);
}

const buildStarted = Date.now();
const images = [...new Set(selected.flatMap((name) => benchmarks[name].images ?? []))];
if (images.length) {
  // The benchmarks read dist/ directly, so it must hold the chains the current sources build.
  console.log(`Building the images the benchmarks measure on (${images.join(', ')}); cached layers are restored, not rebuilt.`);
  const build = spawnSync(process.execPath, [nxBin, 'run-many', '-t', 'build', '-p', ...images.map((image) => `image-${image}`), '--output-style=static'], {
    cwd: repo,
    stdio: 'inherit',
    env: { ...process.env, NX_TUI: 'false' },
  });
  if (build.status !== 0) {
    console.error(`Building ${images.map((image) => `image-${image}`).join(', ')} failed (above); no benchmark was run.`);
    process.exit(1);
  }
}

const started = Date.now();
const building = started - buildStarted > 1000 ? ` (building the images first: ${Math.round((started - buildStarted) / 1000)} s)` : '';
const failed = [];
for (const name of selected) {
  console.log(`\n## ${name}: ${benchmarks[name].what}\n`);
  const benchmarkStarted = Date.now();
  const result = spawnSync(process.execPath, [path.join(repo, 'tools/bench', benchmarks[name].script)], {
    stdio: 'inherit',
    env: { RUNS: String(benchmarks[name].runs ?? 5), ...process.env },
  });
  if (result.status !== 0) failed.push(name);
  console.log(`\n(${name}: ${Math.round((Date.now() - benchmarkStarted) / 1000)} s)`);
}
console.log(
  `\nsuite: ${selected.length} benchmarks in ${((Date.now() - started) / 60000).toFixed(1)} min${building}${failed.length ? `; failed: ${failed.join(', ')}` : ''}`,
);
process.exit(failed.length ? 1 : 0);
