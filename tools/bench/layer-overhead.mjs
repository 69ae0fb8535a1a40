#!/usr/bin/env node
// Per-layer overhead: a layer whose script does nothing, built by vmlb
// (lib/layer-build, what the layer executor runs, without Nx), against a bare
// shell sequence doing the same work by hand: create the overlay, export it
// with qemu-storage-daemon through FUSE, attach a loop device at the root
// partition, mount it, chroot into it to run /bin/true, then unmount,
// detach, stop the daemon by PID and remove the overlay. vmlb does more in
// the same time: namespaces and the chroot's mounts, its state file, the
// leftover watcher and the folder lock, the manifest, the digest. Both sides
// run in turn, in the same folder, RUNS (default 7) times. vmlb's runs are
// also split at the build's phases (the performance marks its pause points
// leave), to show where its time goes.
//
// Usage: node tools/bench/layer-overhead.mjs [path/to/top-of-chain.qcow2]
//        (default: both images/tiny's chain (busybox) and images/prod's
//        (Debian); npx nx build image-tiny image-prod first)
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { chainScratch, median, plugin, repo, runs as runsOr, spread, takeTurns } from './lib.mjs';

const { buildLayer } = plugin('lib/build/layer-build');
const { parseHints } = plugin('lib/image/hints');
const { BUILD_PHASES, PHASE_MARK_PREFIX } = plugin('lib/util/pause-point');

/** What a build does between the phase before and the one named, for the breakdown. */
const PHASE_WORK = {
  'overlay-created':
    "folder lock, leftover check, parent chain check (qemu-img info), watcher start, qemu-img create; the parent's stored listing starts loading",
  'daemon-started': 'qemu-storage-daemon exporting the overlay through FUSE',
  'loop-attached': 'partition table read, loop device at the root partition',
  mounted: 'mount (noatime)',
  'script-finished': "the parent's listing (loaded meanwhile), policy-rc.d, the chroot's namespaces and mounts, the script",
  teardown: 'syncfs, changed inodes from the inode tables, the new listing, unmount',
  detached: 'loop devices detached, daemon stopped and waited for, export unmounted; the new listing encoded meanwhile',
  'before-rename': 'chain digest and sha256 of the overlay',
  renamed: 'old digest, manifest and listing removed, rename',
  end: 'listing (its digest put in front), manifest and build record written, digest written, watcher stopped',
};

const runs = runsOr(7);
const chains = process.argv[2]
  ? [path.resolve(process.argv[2])]
  : [path.join(repo, 'dist/images/tiny/20_motd.qcow2'), path.join(repo, 'dist/images/prod/50_cleanup.qcow2')];

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

/** One chain: the empty layer built on its top, vmlb and the bare sequence taking turns, then the tables. */
async function measure(top) {
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
  try {
    const runBare = () => execFileSync('bash', ['-c', bare], { env: { ...process.env, WORK: work, PARENT: path.basename(top) }, stdio: 'inherit' });
    /** Per phase of each vmlb run, the milliseconds since the phase before it (the first: since the build started). */
    const phaseTimes = Object.fromEntries([...BUILD_PHASES, 'end'].map((phase) => [phase, []]));
    const runVmlb = async () => {
      rmSync(plan.output, { force: true });
      performance.clearMarks();
      const started = performance.now();
      await buildLayer(plan, () => undefined);
      const marks = performance.getEntriesByType('mark').filter((mark) => mark.name.startsWith(PHASE_MARK_PREFIX));
      let previous = started;
      for (const { name, startTime } of [...marks, { name: `${PHASE_MARK_PREFIX}end`, startTime: performance.now() }]) {
        phaseTimes[name.slice(PHASE_MARK_PREFIX.length)].push(startTime - previous);
        previous = startTime;
      }
    };
    // Once each, untimed: warm caches, and the first vmlb build leaves the stored listing the next start from.
    runBare();
    await runVmlb();
    for (const times of Object.values(phaseTimes)) times.length = 0;
    const { baseline: bareTimes, candidate: vmlbTimes } = await takeTurns(runs, runBare, runVmlb);
    console.log(`chain: ${path.relative(repo, top)}; ${runs} runs each, taking turns`);
    console.log('\n| layer with an empty script | baseline: the bare shell sequence, s | vmlb, s | ratio of medians |');
    console.log('| --- | --- | --- | --- |');
    console.log(`| build-layer, \`true\` | ${spread(bareTimes)} | ${spread(vmlbTimes)} | ${(median(vmlbTimes) / median(bareTimes)).toFixed(2)}× |`);
    console.log("\nvmlb's runs split at the build's phases (medians of the time since the phase before, with min and max):");
    console.log('\n| up to the phase | what happens before it | ms |');
    console.log('| --- | --- | --- |');
    const ms = (values) => `${median(values).toFixed(1)} (${Math.min(...values).toFixed(1)}–${Math.max(...values).toFixed(1)})`;
    for (const [phase, times] of Object.entries(phaseTimes)) {
      if (times.length !== runs) throw new Error(`phase ${phase} was marked ${times.length} times in ${runs} builds`);
      console.log(`| ${phase} | ${PHASE_WORK[phase]} | ${ms(times)} |`);
    }
  } finally {
    cleanup();
  }
}

for (const top of chains) {
  if (!existsSync(top)) {
    console.error(`${top} does not exist: build its image first (npx nx build image-tiny image-prod), or give the top of another chain.`);
    process.exit(1);
  }
  await measure(top);
  console.log('');
}
