#!/usr/bin/env node
// vmlb against `virt-customize --run`, the libguestfs tool most teams would
// reach for instead: the same script, run on a fresh overlay of the same
// chain (images/prod, a Debian root). Two scripts: one that does nothing,
// and one that writes 200 files of 256 KiB (50 MiB) of random data under
// /opt/bench. vmlb side: lib/layer-build (what the layer executor runs,
// without Nx), overlay through manifest and digest. virt-customize side:
// `qemu-img create` of the overlay, then `virt-customize --run` on it, which
// boots the libguestfs appliance (its own kernel: linux-image-amd64) under
// qemu, inspects the guest, and runs the script in it. Without KVM that
// appliance runs under TCG (LIBGUESTFS_BACKEND_SETTINGS=force_tcg when /dev/kvm
// is there but unusable). `--no-network` spares the baseline its network
// setup; vmlb's chroot has the host's network at no cost. The sides take
// turns; RUNS (default 5) runs each, after one untimed run each to warm
// the page cache and libguestfs' appliance cache.
//
// Needs: libguestfs-tools and linux-image-amd64 (`tools/setup.sh --bench`).
// Usage: node tools/bench/virt-customize.mjs [path/to/top-of-chain.qcow2]
//        (default dist/images/prod/50_cleanup.qcow2: npx nx build image-prod first)
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { chainArgument, chainScratch, median, plugin, repo, runs as runsOr, spread, takeTurns } from './lib.mjs';

const { buildLayer } = plugin('lib/build/layer-build');
const { parseHints } = plugin('lib/image/hints');
const { kvmUsable } = plugin('lib/boot/qemu-boot');

if (spawnSync('virt-customize', ['--version'], { stdio: 'ignore' }).status !== 0) {
  console.error('virt-customize is not installed: tools/setup.sh --bench installs libguestfs-tools and the kernel its appliance boots (linux-image-amd64).');
  process.exit(1);
}

const runs = runsOr(5);
const top = chainArgument();
const { dir: work, parent, cleanup } = chainScratch(top, '.bench-virt-customize-');

const scripts = {
  'empty (`true`)': '#!/bin/sh\ntrue\n',
  '200 files, 50 MiB': [
    '#!/bin/sh',
    'set -e',
    'mkdir -p /opt/bench',
    'i=0',
    'while [ $i -lt 200 ]; do head -c 262144 /dev/urandom > /opt/bench/file$i; i=$((i + 1)); done',
    '',
  ].join('\n'),
};

const guestfsEnv = { ...process.env, LIBGUESTFS_BACKEND: 'direct' };
if (!(await kvmUsable())) guestfsEnv.LIBGUESTFS_BACKEND_SETTINGS = 'force_tcg';

/** Bytes the overlay holds (allocated clusters), to show both sides wrote the same data. */
function written(overlay) {
  const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', overlay], { encoding: 'utf8' }));
  return info['actual-size'];
}

const rows = [];
try {
  let index = 0;
  for (const [label, content] of Object.entries(scripts)) {
    const layer = `9${index++}_bench`;
    const layerDir = path.join(work, 'layers', layer);
    mkdirSync(layerDir, { recursive: true });
    const script = path.join(layerDir, 'build-layer');
    writeFileSync(script, content, { mode: 0o755 });
    const plan = {
      workspaceRoot: repo,
      imageName: 'bench',
      layer,
      layerDir,
      script,
      kind: 'build-layer',
      hints: parseHints(readFileSync(script, 'utf8'), script, 'build-layer'),
      parent,
      output: path.join(work, `${layer}.qcow2`),
    };
    const theirs = path.join(work, `${layer}.virt-customize.qcow2`);
    const runVmlb = async () => {
      rmSync(plan.output, { force: true });
      await buildLayer(plan, () => undefined);
    };
    const runVirtCustomize = () => {
      rmSync(theirs, { force: true });
      execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', path.basename(top), theirs], { cwd: work });
      execFileSync('virt-customize', ['--quiet', '--format', 'qcow2', '-a', theirs, '--no-network', '--run', script], {
        env: guestfsEnv,
        stdio: ['ignore', 'ignore', 'inherit'],
      });
    };
    await runVmlb();
    runVirtCustomize();
    const { baseline: theirTimes, candidate: vmlbTimes } = await takeTurns(runs, runVirtCustomize, runVmlb);
    rows.push({ label, vmlbTimes, theirTimes, vmlbBytes: written(plan.output), theirBytes: written(theirs) });
  }
  const mib = (bytes) => (bytes / 2 ** 20).toFixed(1);
  console.log(
    `chain: ${path.relative(repo, top)}; ${runs} runs each, taking turns; virt-customize under ${guestfsEnv.LIBGUESTFS_BACKEND_SETTINGS ? 'TCG' : 'KVM'}`,
  );
  console.log('\n| script | baseline: virt-customize --run, s | vmlb, s | ratio of medians | overlay written (virt-customize / vmlb), MiB |');
  console.log('| --- | --- | --- | --- | --- |');
  for (const row of rows) {
    console.log(
      `| ${row.label} | ${spread(row.theirTimes)} | ${spread(row.vmlbTimes)} | ${(median(row.vmlbTimes) / median(row.theirTimes)).toFixed(3)}× | ${mib(row.theirBytes)} / ${mib(row.vmlbBytes)} |`,
    );
  }
} finally {
  cleanup();
}
