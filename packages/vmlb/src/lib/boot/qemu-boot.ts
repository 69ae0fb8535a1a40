import { closeSync, createWriteStream, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';
import { tail } from '../util/exec';
import { imageInfo } from '../disk/qcow2-info';

export { KVM_VERDICT_FILE, kvmUsable, rememberKvmFailure } from './kvm-probe';

export interface BootOptions {
  /** cloud-init NoCloud seed URL as the guest sees it. */
  seedUrl?: string;
  /** The disk to boot (a qcow2 chain or any disk qemu-img reads); never written. */
  disk: string;
  /** The disk's format (diskFormat). */
  format: string;
  /** Where qemu keeps the boot's throwaway overlay (removed afterwards). */
  scratchDir: string;
  memory: string;
  cpus: number;
  /** Host port forwarded to the guest's port 22; 0 picks a free one. */
  sshPort: number;
  /** Where the whole serial console is written. */
  logFile: string;
}

export interface CheckOptions {
  /** Regular expression on the console that marks a good boot. */
  expect: RegExp;
  timeoutMs: number;
  /** Under KVM, a console silent this long means KVM stalls the guest (default KVM_STALL_MS). */
  kvmStallMs?: number;
}

/**
 * A guest under KVM prints without pause (firmware, bootloader, kernel,
 * systemd's status lines); on hosts whose nested KVM passes the probe but
 * cannot run a kernel, it goes silent for good. Worth a boot under TCG.
 */
export const KVM_STALL_MS = 30_000;

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * The qemu command line for a boot of `disk` (console on the serial port).
 * With `snapshot`, qemu itself puts a throwaway overlay on the disk (in
 * $TMPDIR, unlinked as soon as it is open): the disk is never written and
 * no qemu-img runs before the boot. Flushes to that overlay are skipped
 * (cache=unsafe): nothing of it outlives the boot.
 */
export function qemuArguments(
  disk: string,
  options: { memory: string; cpus: number; sshPort: number; kvm: boolean; interactive: boolean; seedUrl?: string; format?: string; snapshot?: boolean },
): string[] {
  return [
    '-machine',
    'pc',
    ...(options.kvm ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', 'tcg']),
    '-m',
    options.memory,
    '-smp',
    String(options.cpus),
    '-drive',
    `file=${disk.replace(/,/g, ',,')},if=virtio,format=${options.format ?? 'qcow2'},cache=unsafe${options.snapshot ? ',snapshot=on' : ''}`,
    '-netdev',
    `user,id=net0,hostfwd=tcp:127.0.0.1:${options.sshPort}-:22`,
    '-device',
    'virtio-net-pci,netdev=net0',
    // Entropy from the host, as clouds give it: the guest's random pool is ready at once (ssh keys, cloud-init).
    '-device',
    'virtio-rng-pci',
    // cloud-init's NoCloud source reads its seed from this URL (10.0.2.2 is
    // the host); an http seed is the network flavour, nocloud-net.
    ...(options.seedUrl ? ['-smbios', `type=1,serial=ds=nocloud-net;s=${options.seedUrl}`] : []),
    // The guest powering off (or a kernel panic with panic=-1) ends qemu.
    '-no-reboot',
    ...(options.interactive ? ['-nographic'] : ['-display', 'none', '-monitor', 'none', '-serial', 'stdio']),
  ];
}

/**
 * A scratch folder for one boot (its ssh key, and qemu's throwaway overlay
 * through TMPDIR), removed afterwards with everything in it.
 */
export async function withBootScratch<T>(work: (scratchDir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(path.join(tmpdir(), 'vmlb-boot-'));
  try {
    return await work(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The format of the disk to boot: qcow2 from its magic (vmlb's layers; no process), else what qemu-img detects. */
export async function diskFormat(disk: string): Promise<string> {
  const magic = Buffer.alloc(4);
  const fd = openSync(disk, 'r');
  try {
    readSync(fd, magic, 0, 4, 0);
  } finally {
    closeSync(fd);
  }
  if (magic.toString('latin1') === 'QFI\xfb') return 'qcow2';
  return (await imageInfo(disk)).format;
}

/** What qemu prints when KVM cannot run the guest's code (nested virtualisation without unrestricted guest mode); the guest then hangs. */
const KVM_FAILURE = /KVM internal error|emulation failure/;

export interface CheckResult {
  passed: boolean;
  /** KVM failed on the guest's code: the boot is worth trying again under TCG. */
  kvmFailed?: boolean;
  /** Why it failed, for the user. */
  reason?: string;
  consoleTail: string;
  seconds: number;
}

/**
 * Boots with no keyboard and watches the serial console for `expect`.
 * qemu is stopped by its PID whatever happens (match, timeout, the guest
 * powering off, an abort), and the full console is kept in `logFile`.
 */
export async function bootAndCheck(
  boot: BootOptions & { kvm: boolean },
  check: CheckOptions,
  signal?: AbortSignal,
  /** Runs once the console matched, with the guest still up; returns why it failed, if it did. */
  afterBoot?: () => Promise<string | undefined>,
): Promise<CheckResult> {
  const started = Date.now();
  const logStream = createWriteStream(boot.logFile);
  const qemu = execa('qemu-system-x86_64', qemuArguments(boot.disk, { ...boot, snapshot: true, interactive: false }), {
    env: { TMPDIR: boot.scratchDir },
    stdin: 'ignore',
    buffer: false,
    reject: false,
    cleanup: true,
  });
  let consoleText = '';
  let settled = false;
  /** Why KVM failed this guest, when it did. */
  let kvmFailed: string | undefined;
  let resolveMatch: (matched: boolean) => void = () => undefined;
  const matched = new Promise<boolean>((resolve) => (resolveMatch = resolve));
  const onOutput = (chunk: Buffer) => {
    const text = chunk.toString();
    lastOutput = Date.now();
    logStream.write(chunk);
    process.stdout.write(text);
    consoleText += text;
    if (consoleText.length > 1_000_000) consoleText = consoleText.slice(-500_000);
    if (!settled && check.expect.test(consoleText)) {
      settled = true;
      resolveMatch(true);
    }
    if (!settled && boot.kvm && KVM_FAILURE.test(text)) {
      settled = true;
      kvmFailed = 'KVM could not run the guest (qemu: KVM internal error, emulation failure)';
      resolveMatch(false);
    }
  };
  qemu.stdout?.on('data', onOutput);
  qemu.stderr?.on('data', onOutput);
  const timer = setTimeout(() => resolveMatch(false), check.timeoutMs);
  let lastOutput = Date.now();
  const stallWatch = boot.kvm
    ? setInterval(() => {
        if (settled || Date.now() - lastOutput < (check.kvmStallMs ?? KVM_STALL_MS)) return;
        settled = true;
        kvmFailed = `KVM made no progress: the console stayed silent for ${Math.round((check.kvmStallMs ?? KVM_STALL_MS) / 1000)} s`;
        resolveMatch(false);
      }, 250)
    : undefined;
  const onAbort = () => resolveMatch(false);
  signal?.addEventListener('abort', onAbort);
  let qemuExited = false;
  const exited = qemu.then((result) => {
    qemuExited = true;
    resolveMatch(false);
    return result;
  });

  try {
    let ok = await matched;
    const seconds = (Date.now() - started) / 1000;
    let afterBootFailure: string | undefined;
    if (ok && afterBoot) {
      afterBootFailure = await afterBoot();
      ok = afterBootFailure === undefined;
    }
    const running = !qemuExited;
    let reason: string | undefined;
    if (afterBootFailure !== undefined) reason = afterBootFailure;
    else if (!ok) {
      if (kvmFailed) reason = kvmFailed;
      else if (signal?.aborted) reason = 'the boot was interrupted';
      else if (!running) {
        const result = await exited;
        reason = `qemu exited (code ${result.exitCode ?? result.signal}) before ${check.expect} appeared on the console`;
      } else reason = `${check.expect} did not appear on the console within ${Math.round(check.timeoutMs / 1000)} s`;
    }
    return { passed: ok, ...(kvmFailed ? { kvmFailed: true } : {}), reason, consoleTail: tail(consoleText.replace(/\r/g, ''), 40), seconds };
  } finally {
    clearTimeout(timer);
    clearInterval(stallWatch);
    signal?.removeEventListener('abort', onAbort);
    if (!qemuExited && qemu.pid !== undefined) {
      qemu.kill('SIGTERM');
      const stopped = await Promise.race([exited.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 10_000))]);
      if (!stopped) qemu.kill('SIGKILL');
    }
    await exited;
    await new Promise((resolve) => logStream.end(resolve));
  }
}

/** Boots on the terminal: the user is on the serial console; Ctrl-a x quits. */
export async function bootInteractive(boot: BootOptions & { kvm: boolean }): Promise<number> {
  const result = await execa('qemu-system-x86_64', qemuArguments(boot.disk, { ...boot, snapshot: true, interactive: true }), {
    env: { TMPDIR: boot.scratchDir },
    stdio: 'inherit',
    reject: false,
    cleanup: true,
  });
  return result.exitCode ?? 1;
}
