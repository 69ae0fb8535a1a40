#!/usr/bin/env node
// What the per-layer manifest costs: every build-layer build walks the
// image's root filesystem after mounting it and again after the script
// (metadata only), and reads the dpkg database twice. This builds layers on
// top of a real chain (default: the images/prod chain in dist/, a Debian
// root; build it first with `npx nx build image-prod`) and reports, in the
// same runs, the whole layer build and the part of it spent on the two walks
// (the manifest's own snapshotMs), so the overhead is a ratio against the
// same build without them.
//
// Layers measured: an empty script (the worst case: nothing but overhead),
// and a script writing 200 files / 50 MB. RUNS (default 5) runs each.
// Uses the compiled plugin (npm run build), as root.
//
// Usage: node tools/bench/layer-manifest.mjs [path/to/top-of-chain.qcow2]
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { chainArgument, chainScratch, median, plugin, repo, runs as runsOr, spread } from './lib.mjs';

const { buildLayer } = plugin('lib/build/layer-build');
const { parseHints } = plugin('lib/image/hints');

const runs = runsOr(5);
const top = chainArgument();

const { dir: work, parent, cleanup } = chainScratch(top, '.bench-manifest-');

const scripts = {
  'empty script': 'true',
  '200 files / 50 MB': 'mkdir -p /opt/bench && for i in $(seq 200); do head -c 262144 /dev/urandom > /opt/bench/f$i; done',
};

function layer(name, body, parentFile = parent) {
  const layerDir = path.join(work, 'layers', name);
  mkdirSync(layerDir, { recursive: true });
  const script = path.join(layerDir, 'build-layer');
  writeFileSync(script, `#!/bin/sh\nset -eu\n${body}\n`, { mode: 0o755 });
  return {
    workspaceRoot: repo,
    imageName: 'bench',
    layer: name,
    layerDir,
    script,
    kind: 'build-layer',
    hints: parseHints(readFileSync(script, 'utf8'), script, 'build-layer'),
    parent: parentFile,
    output: path.join(work, `${name}.qcow2`),
  };
}

try {
  // The root being walked: entries and space used, from inside the chroot
  // (the script's output goes to this process's stdout). This first layer
  // also leaves the stored listing the measured layers start from, as any
  // layer built on a build-layer layer does.
  const probe = layer('90_probe', 'echo "entries $(find / -xdev | wc -l) used $(df -B1 --output=used / | tail -n1)"');
  let rootLine = '';
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = (chunk, ...rest) => {
    rootLine += String(chunk);
    return write(chunk, ...rest);
  };
  try {
    await buildLayer(probe, () => undefined);
  } finally {
    process.stdout.write = write;
  }
  const [, entries, used] = rootLine.match(/entries (\d+) used (\d+)/) ?? [];
  const describeRoot = entries ? `${Number(entries).toLocaleString('en')} entries, ${(Number(used) / 1e9).toFixed(2)} GB used` : 'size unknown';
  console.log(`root of ${path.relative(repo, top)}: ${describeRoot}; ${runs} runs per layer`);

  const rows = [];
  for (const [label, body] of Object.entries(scripts)) {
    const builds = [];
    const walks = [];
    const methods = new Set();
    for (let run = 0; run < runs; run++) {
      const plan = layer(`91_${label.replace(/\W+/g, '_')}`, body, probe.output);
      rmSync(plan.output, { force: true });
      // Each run starts with the page cache as a fresh build finds it on a busy machine: cold.
      if (process.env.DROP_CACHES === '1') execFileSync('sh', ['-c', 'sync && echo 3 > /proc/sys/vm/drop_caches']);
      const started = Date.now();
      await buildLayer(plan, () => undefined);
      builds.push(Date.now() - started);
      const manifest = JSON.parse(readFileSync(plan.output.replace(/\.qcow2$/, '.manifest.json'), 'utf8'));
      walks.push(manifest.snapshotMs);
      methods.add(`${manifest.snapshotMethod.before} / ${manifest.snapshotMethod.after}`);
    }
    const without = builds.map((build, index) => build - walks[index]);
    const overhead = median(builds.map((build, index) => walks[index] / (build - walks[index])));
    rows.push(`| ${label} | ${[...methods].join(', ')} | ${spread(builds)} | ${spread(walks)} | ${spread(without)} | +${(overhead * 100).toFixed(0)} % |`);
  }
  console.log('\n| layer | listing before / after | build, s | of which the manifest, s | build without it, s | overhead (median) |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const row of rows) console.log(row);
} finally {
  cleanup();
}
