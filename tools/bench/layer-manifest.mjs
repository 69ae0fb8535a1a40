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
import { existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';

const require = createRequire(import.meta.url);
const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const { buildLayer } = require(path.join(repo, 'packages/vmlb/dist/lib/layer-build.js'));
const { parseHints } = require(path.join(repo, 'packages/vmlb/dist/lib/hints.js'));

const runs = Number(process.env.RUNS ?? 5);
const top = path.resolve(process.argv[2] ?? path.join(repo, 'dist/images/prod/50_cleanup.qcow2'));
if (!existsSync(top)) {
  console.error(`${top} does not exist: build the chain first (npx nx build image-prod), or give the top of another chain.`);
  process.exit(1);
}

// The chain's files, hard-linked into a scratch folder beside them (same
// filesystem), so that overlays are written there and dist/ stays as it is.
const chainDir = path.dirname(top);
const work = mkdtempSync(path.join(path.dirname(chainDir), '.bench-manifest-'));
const cleanup = () => rmSync(work, { recursive: true, force: true });
process.on('SIGINT', () => {
  cleanup();
  process.exit(130);
});
for (const name of readdirSync(chainDir).filter((file) => /\.(qcow2|digest)$/.test(file) && file !== 'image.qcow2')) {
  linkSync(path.join(chainDir, name), path.join(work, name));
}
const parent = path.join(work, path.basename(top));

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

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};
const seconds = (ms) => (ms / 1000).toFixed(2);
const spread = (values) => `${seconds(median(values))} (${seconds(Math.min(...values))}–${seconds(Math.max(...values))})`;

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
