#!/usr/bin/env node
// test-boot's check mode against the bare qemu command booting the same
// disk to the same console marker: `nx run image-tiny-boot:test-boot
// --check` (Nx, the image's build from the cache, vmlb's throwaway overlay,
// the KVM probe, qemu, the console watch) against `qemu-img create` of an
// overlay plus `qemu-system-x86_64` with the same arguments, stopped by PID
// when the marker appears. Under TCG here (no KVM). The sides take turns;
// RUNS (default 5) runs each.
//
// Usage: node tools/bench/test-boot.mjs   (npx nx build image-tiny-boot first)
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { median, nxBin, plugin, repo, runs as runsOr, spread, takeTurns } from './lib.mjs';

const { qemuArguments, freePort } = plugin('lib/boot/qemu-boot');

const runs = runsOr(5);
const disk = path.join(repo, 'dist/images/tiny-boot/image.qcow2');
if (!existsSync(disk)) {
  console.error(`${disk} does not exist: npx nx build image-tiny-boot first.`);
  process.exit(1);
}
const settings = JSON.parse(readFileSync(path.join(repo, 'images/tiny-boot/image.json'), 'utf8')).testBoot;
const marker = settings.expect;
const scratch = mkdtempSync(path.join(tmpdir(), 'vmlb-bench-boot-'));
let qemuPid;
process.on('SIGINT', () => {
  if (qemuPid) process.kill(qemuPid, 'SIGKILL');
  rmSync(scratch, { recursive: true, force: true });
  process.exit(130);
});

/** The bare boot: an overlay, qemu with test-boot's arguments, stopped by PID once the marker is on the console. */
async function bareBoot() {
  const overlay = path.join(scratch, 'bare.qcow2');
  spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', disk, overlay], { stdio: 'inherit' });
  const args = qemuArguments(overlay, { memory: settings.memory, cpus: settings.cpus, sshPort: await freePort(), kvm: false, interactive: false });
  const qemu = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  qemuPid = qemu.pid;
  const exited = new Promise((resolve) => qemu.on('exit', resolve));
  await new Promise((resolve, reject) => {
    let console = '';
    const timer = setTimeout(() => reject(new Error(`no "${marker}" within ${settings.timeout} s`)), settings.timeout * 1000);
    qemu.stdout.on('data', (chunk) => {
      console += chunk;
      if (console.includes(marker)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  qemu.kill('SIGTERM');
  await exited;
  qemuPid = undefined;
  rmSync(overlay, { force: true });
}

function vmlbBoot() {
  const result = spawnSync(process.execPath, [nxBin, 'run', 'image-tiny-boot:test-boot', '--check'], {
    cwd: repo,
    env: { ...process.env, NX_DAEMON: 'false', NX_TUI: 'false', NX_NO_CLOUD: 'true', FORCE_COLOR: '0' },
    encoding: 'utf8',
  });
  if (result.status !== 0) throw new Error(`test-boot --check failed:\n${result.stdout}${result.stderr}`);
}

try {
  // Once each, untimed: the image's layers put in place from the cache, the page cache warm.
  await bareBoot();
  vmlbBoot();
  const { baseline: bare, candidate: vmlb } = await takeTurns(runs, bareBoot, vmlbBoot);
  console.log(`dist/images/tiny-boot/image.qcow2 to "${marker}", TCG; ${runs} runs each, taking turns`);
  console.log('\n| boot to the marker | s | ratio of medians |');
  console.log('| --- | --- | --- |');
  console.log(`| bare: qemu-img create + qemu-system-x86_64, stopped by PID (baseline) | ${spread(bare)} | 1.00× |`);
  console.log(`| \`nx run image-tiny-boot:test-boot --check\` | ${spread(vmlb)} | ${(median(vmlb) / median(bare)).toFixed(2)}× |`);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
