#!/usr/bin/env node
// Per-layer overhead: a layer whose script does nothing, built by vmlb
// (lib/layer-build, what the layer executor runs, without Nx), against a bare
// shell sequence doing the same work by hand: create the overlay, export it
// with qemu-storage-daemon through FUSE, attach a loop device at the root
// partition, mount it, chroot into it to run /bin/true, then unmount,
// detach, stop the daemon by PID and remove the overlay. vmlb does more in
// the same time: namespaces and the chroot's mounts, its state file, the
// leftover watcher and the folder lock, the manifest, the digest. Both sides
// run in turn, in the same folder, RUNS (default 7) times.
//
// Usage: node tools/bench/layer-overhead.mjs [path/to/top-of-chain.qcow2]
//        (default dist/images/tiny/20_motd.qcow2: npx nx build image-tiny first)
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { chainScratch, median, plugin, repo, runs as runsOr, spread, takeTurns } from './lib.mjs';

const { buildLayer } = plugin('lib/layer-build');
const { parseHints } = plugin('lib/hints');

const runs = runsOr(7);
const top = path.resolve(process.argv[2] ?? path.join(repo, 'dist/images/tiny/20_motd.qcow2'));
const { dir: work, cleanup } = chainScratch(top, '.bench-overhead-');

const layerDir = path.join(work, 'layers', '90_empty');
mkdirSync(layerDir, { recursive: true });
const script = path.join(layerDir, 'build-layer');
writeFileSync(script, '#!/bin/sh\ntrue\n', { mode: 0o755 });
const plan = {
  workspaceRoot: repo,
  imageName: 'bench',
  layer: '90_empty',
  layerDir,
  script,
  kind: 'build-layer',
  hints: parseHints(readFileSync(script, 'utf8'), script, 'build-layer'),
  parent: path.join(work, path.basename(top)),
  output: path.join(work, '90_empty.qcow2'),
};

// The same steps by hand. The daemon is stopped by the PID it wrote, and
// waited for (it flushes the overlay as it exits); its FUSE mount goes after.
const bare = `set -eu
cd "$WORK"
qemu-img create -q -f qcow2 -F qcow2 -b "$PARENT" bare.qcow2
: > bare.raw
qemu-storage-daemon --blockdev driver=file,node-name=f,filename=bare.qcow2 --blockdev driver=qcow2,node-name=q,file=f \\
  --export type=fuse,id=e,node-name=q,mountpoint=bare.raw,writable=on --pidfile bare.pid --daemonize
set -- $(sfdisk --dump bare.raw | sed -n 's/.*start= *\\([0-9]*\\), size= *\\([0-9]*\\).*/\\1 \\2/p' | head -n1)
loop=$(losetup --find --show --offset $(($1 * 512)) --sizelimit $(($2 * 512)) bare.raw)
mkdir -p bare-root
mount "$loop" bare-root
chroot bare-root /bin/true
umount bare-root
losetup -d "$loop"
pid=$(cat bare.pid)
kill "$pid"
# Gone, or a zombie (PID 1 reaps the daemonized process when it gets to it).
while [ -e /proc/$pid ] && [ "$(cut -d' ' -f3 /proc/$pid/stat 2>/dev/null)" != Z ]; do sleep 0.01; done
umount bare.raw 2>/dev/null || true
rm -f bare.qcow2 bare.raw bare.pid
`;

try {
  const runBare = () => execFileSync('bash', ['-c', bare], { env: { ...process.env, WORK: work, PARENT: path.basename(top) }, stdio: 'inherit' });
  const runVmlb = async () => {
    rmSync(plan.output, { force: true });
    await buildLayer(plan, () => undefined);
  };
  // Once each, untimed: warm caches, and the first vmlb build leaves the stored listing the next start from.
  runBare();
  await runVmlb();
  const { baseline: bareTimes, candidate: vmlbTimes } = await takeTurns(runs, runBare, runVmlb);
  console.log(`chain: ${path.relative(repo, top)}; ${runs} runs each, taking turns`);
  console.log('\n| layer with an empty script | baseline: the bare shell sequence, s | vmlb, s | ratio of medians |');
  console.log('| --- | --- | --- | --- |');
  console.log(`| build-layer, \`true\` | ${spread(bareTimes)} | ${spread(vmlbTimes)} | ${(median(vmlbTimes) / median(bareTimes)).toFixed(2)}× |`);
} finally {
  cleanup();
}
