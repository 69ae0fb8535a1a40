#!/usr/bin/env node
// The everyday loop on images/prod: edit the page 30_app ships
// (apps/welcome/src/index.html, restored afterwards), `nx build image-prod`,
// then `nx run image-prod:test-boot --check --ssh "systemctl
// is-system-running --wait; curl -fsS localhost"`. The baseline, in the same
// run: the bare qemu command (test-boot's arguments, a throwaway overlay made
// with qemu-img create, the same cloud-init seed served over HTTP) booting
// the image just built to the same console marker (login:), stopped by PID.
// Under TCG here (no KVM). The sides take turns after one untimed run of
// each, whose guest also reports systemd-analyze. RUNS (default 3: a run is
// about a minute per side) runs each.
//
// Where the time goes, from timestamps of the output lines as they arrive:
// the build, Nx and test-boot before qemu starts, firmware + bootloader +
// kernel (to the kernel's "Run /init"), the initramfs (to systemd's
// "Welcome to"), userspace to the login prompt, and the ssh check.
//
// Usage: node tools/bench/edit-to-boot.mjs   (npx nx build image-prod first)
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { median, nxBin, plugin, repo, runs as runsOr, spread } from './lib.mjs';

const { qemuArguments, freePort } = plugin('lib/boot/qemu-boot');
const { serveNoCloudSeed } = plugin('lib/boot/cloud-init-seed');

const runs = runsOr(3);
const disk = path.join(repo, 'dist/images/prod/image.qcow2');
const page = path.join(repo, 'apps/welcome/src/index.html');
if (!existsSync(disk)) {
  console.error(`${disk} does not exist: npx nx build image-prod first.`);
  process.exit(1);
}
const settings = JSON.parse(readFileSync(path.join(repo, 'images/prod/image.json'), 'utf8')).testBoot;
const marker = new RegExp(settings.expect);
const check = 'systemctl is-system-running --wait; curl -fsS localhost';
const original = readFileSync(page, 'utf8');
const scratch = mkdtempSync(path.join(tmpdir(), 'vmlb-bench-edit-'));
const env = { ...process.env, NX_DAEMON: 'false', NX_TUI: 'false', NX_NO_CLOUD: 'true', FORCE_COLOR: '0' };
let child;
/** Puts the page back and removes the scratch folder; stops a running child by its PID. */
function restore() {
  if (child?.exitCode === null) child.kill('SIGTERM');
  writeFileSync(page, original);
  rmSync(scratch, { recursive: true, force: true });
}
process.on('SIGINT', () => {
  restore();
  process.exit(130);
});

/** Console markers, each the first line that shows a phase is over: [phase, pattern]. */
const PHASES = [
  ['kernel', /Run \/init as init process/],
  ['initramfs', /Welcome to .*Debian/],
  ['userspace', marker],
];

/** Runs a command, noting when each pattern first appears in its output; resolves with those times (ms from start) and the output. */
function watched(command, args, patterns, { stopAt, options = {} } = {}) {
  const started = performance.now();
  const seen = {};
  let output = '';
  return new Promise((resolve, reject) => {
    child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
    // Through Nx, the console can come broken into lines anywhere: markers are matched with the line breaks taken out, on the newest output.
    let flat = '';
    const onData = (chunk) => {
      output += chunk;
      const text = String(chunk).replace(/\r?\n/g, '');
      flat = flat.slice(-400) + text;
      for (const [name, pattern] of patterns) if (seen[name] === undefined && pattern.test(flat)) seen[name] = performance.now() - started;
      if (stopAt && seen[stopAt] !== undefined && child.exitCode === null) child.kill('SIGTERM');
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', reject);
    child.on('exit', (code) => {
      const end = performance.now() - started;
      if (stopAt ? seen[stopAt] === undefined : code !== 0) reject(new Error(`${command} ${args.join(' ')} failed (${code}):\n${output.slice(-3000)}`));
      else resolve({ seen, end, output });
    });
  });
}

/** The bare boot: qemu-img create, the seed served, qemu with test-boot's arguments until the marker, stopped by PID. */
async function bareBoot() {
  const overlay = path.join(scratch, 'bare.qcow2');
  const started = performance.now();
  spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'qcow2', '-b', disk, overlay], { stdio: 'inherit' });
  const seed = await serveNoCloudSeed(
    path.join(repo, 'images/prod/test-boot'),
    'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchBenchBenchBenchBenchBenchBenchBench bench',
  );
  try {
    const args = qemuArguments(overlay, {
      memory: settings.memory,
      cpus: settings.cpus,
      sshPort: await freePort(),
      kvm: false,
      interactive: false,
      seedUrl: seed.guestUrl,
    });
    const qemuStarted = performance.now() - started;
    const boot = await watched('qemu-system-x86_64', args, PHASES, { stopAt: 'userspace' });
    const at = (name) => qemuStarted + boot.seen[name];
    return {
      total: at('userspace'),
      setup: qemuStarted,
      kernel: at('kernel') - qemuStarted,
      initramfs: at('initramfs') - at('kernel'),
      userspace: at('userspace') - at('initramfs'),
    };
  } finally {
    await seed.close();
    rmSync(overlay, { force: true });
  }
}

let edits = 0;
/** Edit, build, checked boot; the guest also runs `extra` after the check (untimed run only). */
async function editBuildBoot(extra = '') {
  writeFileSync(page, original.replace('</h1>', ` (edit ${Date.now()}-${++edits})</h1>`));
  const build = await watched(process.execPath, [nxBin, 'build', 'image-prod', '--output-style=static'], [], { options: { cwd: repo, env } });
  const layers = [...new Set([...build.output.matchAll(/nx run prod-(\w+):build(?!.*\[(?:local|remote) cache\])/g)].map((match) => match[1]))];
  const boot = await watched(
    process.execPath,
    [nxBin, 'run', 'image-prod:test-boot', '--check', `--ssh=${check}${extra}`],
    [['booting', /vmlb: booting /], ...PHASES, ['ssh', /vmlb: ssh command exited with 0/]],
    { options: { cwd: repo, env } },
  );
  const at = (name) => boot.seen[name];
  return {
    build: build.end,
    layers,
    setup: at('booting'),
    kernel: at('kernel') - at('booting'),
    initramfs: at('initramfs') - at('kernel'),
    userspace: at('userspace') - at('initramfs'),
    toLogin: at('userspace'),
    ssh: at('ssh') - at('userspace'),
    boot: boot.end,
    total: build.end + boot.end,
    output: boot.output,
  };
}

try {
  // Once each, untimed: the page cache warm; the guest reports systemd's own split.
  await bareBoot();
  const warm = await editBuildBoot('; systemd-analyze; systemd-analyze blame --no-pager | head -n 8');
  const analyze = warm.output.match(/Startup finished in .*/)?.[0] ?? '(no systemd-analyze output)';
  const blame = [...warm.output.matchAll(/^\s+(\d[\d.]*m?s \S+\.(?:service|device|mount))\s*$/gm)].map((match) => match[1]).slice(0, 8);
  const bare = [];
  const vmlb = [];
  for (let run = 0; run < runs; run++) {
    const sides = [async () => bare.push(await bareBoot()), async () => vmlb.push(await editBuildBoot())];
    if (run % 2) sides.reverse();
    for (const side of sides) await side();
  }
  const col = (rows, key) => spread(rows.map((row) => row[key]));
  const ratio = (key) => `${(median(vmlb.map((row) => row[key])) / median(bare.map((row) => row.total))).toFixed(2)}×`;
  console.log(`images/prod, TCG, ${settings.cpus} vCPUs, ${settings.memory}; ${runs} runs each, taking turns; rebuilt layers: ${vmlb[0].layers.join(', ')}`);
  console.log('\n| from the edit | s | against the bare boot to login: |');
  console.log('| --- | --- | --- |');
  console.log(`| bare: qemu-img create + qemu-system-x86_64 to \`login:\` (baseline) | ${col(bare, 'total')} | 1.00× |`);
  console.log(`| \`nx build image-prod\` | ${col(vmlb, 'build')} | |`);
  console.log(`| \`nx run image-prod:test-boot --check\` to \`login:\` | ${col(vmlb, 'toLogin')} | ${ratio('toLogin')} |`);
  console.log(`| the same with the ssh check, to its end | ${col(vmlb, 'boot')} | ${ratio('boot')} |`);
  console.log(`| edit to checked boot (build + checked boot) | ${col(vmlb, 'total')} | ${ratio('total')} |`);
  console.log('\n| phase | bare, s | test-boot, s |');
  console.log('| --- | --- | --- |');
  console.log(`| before qemu starts (bare: qemu-img create, seed server; test-boot: Nx, the executor) | ${col(bare, 'setup')} | ${col(vmlb, 'setup')} |`);
  console.log(`| firmware, bootloader, kernel (to "Run /init") | ${col(bare, 'kernel')} | ${col(vmlb, 'kernel')} |`);
  console.log(`| initramfs (to systemd's "Welcome to") | ${col(bare, 'initramfs')} | ${col(vmlb, 'initramfs')} |`);
  console.log(`| userspace to \`login:\` | ${col(bare, 'userspace')} | ${col(vmlb, 'userspace')} |`);
  console.log(`| ssh check (is-system-running --wait, curl), to its end | | ${col(vmlb, 'ssh')} |`);
  console.log(`\nThe guest's own split (untimed run): ${analyze}`);
  console.log(`Slowest units there: ${blame.join('; ')}`);
} finally {
  restore();
}
