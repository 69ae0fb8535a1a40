import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';

/** Where a boot records that KVM failed a guest on this host, until the host reboots (its boot id). */
export const KVM_VERDICT_FILE = path.join(tmpdir(), 'vmlb-kvm-failed');

/**
 * Where the probe's own verdict is kept until the host reboots: the probe
 * starts a machine (up to its 5 s limit), and its answer does not change
 * while the host runs. Only a definite answer is kept (the firmware ran,
 * or qemu exited), never a probe that ran out of time on a busy host.
 */
export const KVM_PROBE_FILE = path.join(tmpdir(), 'vmlb-kvm-probe');

/**
 * Whether KVM works here. /dev/kvm can exist and still fail (nested
 * virtualisation without MSR support makes qemu abort on the first vCPU),
 * so a probe machine with no disk is started under KVM and must reach
 * SeaBIOS's "Booting from" within a few seconds. VMLB_ACCEL=kvm|tcg skips
 * the probe, and so does a verdict from an earlier run since the host started.
 */
export async function kvmUsable(
  env: NodeJS.ProcessEnv = process.env,
  probe: { device?: string; qemu?: string; timeoutMs?: number; verdictFile?: string; probeFile?: string } = {},
): Promise<boolean> {
  if (env.VMLB_ACCEL === 'kvm') return true;
  if (env.VMLB_ACCEL === 'tcg') return false;
  if (kvmFailedSinceBoot(probe.verdictFile)) return false;
  const { device = '/dev/kvm', qemu = 'qemu-system-x86_64', timeoutMs = 5000 } = probe;
  // Beside a verdict file given in its place (the tests'), never the host's own.
  const probeFile = probe.probeFile ?? (probe.verdictFile ? `${probe.verdictFile}-probe` : KVM_PROBE_FILE);
  try {
    accessSync(device, constants.R_OK | constants.W_OK);
  } catch {
    return false;
  }
  const remembered = rememberedLine(probeFile);
  if (remembered === 'usable' || remembered === 'unusable') return remembered === 'usable';
  const verdict = await probeKvm(qemu, timeoutMs);
  if (verdict !== 'timeout') writeFileSync(probeFile, `${hostBootId()}\n${verdict ? 'usable' : 'unusable'}\n`);
  return verdict === true;
}

/** Starts a disk-less machine under KVM: true once its firmware boots, false when qemu exits first, 'timeout' when neither happens in time. */
async function probeKvm(qemu: string, timeoutMs: number): Promise<boolean | 'timeout'> {
  const dir = mkdtempSync(path.join(tmpdir(), 'vmlb-kvm-probe-'));
  const debugLog = path.join(dir, 'bios.log');
  try {
    const machine = execa(
      qemu,
      ['-accel', 'kvm', '-cpu', 'host', '-M', 'pc', '-m', '64', '-nodefaults', '-display', 'none', '-no-reboot'].concat([
        '-debugcon',
        `file:${debugLog}`,
        '-global',
        'isa-debugcon.iobase=0x402',
      ]),
      { reject: false, stdio: 'ignore', cleanup: true },
    );
    const deadline = Date.now() + timeoutMs;
    let booted = false;
    // A qemu that aborts (the MSR case) ends by a signal: exitCode stays null then.
    while (!booted && Date.now() < deadline && machine.exitCode === null && machine.signalCode === null) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      booted = existsSync(debugLog) && readFileSync(debugLog, 'latin1').includes('Booting from');
    }
    const exited = machine.exitCode !== null || machine.signalCode !== null;
    machine.kill('SIGKILL');
    await machine;
    return booted ? true : exited ? false : 'timeout';
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** This boot of the host, so that a verdict outlives vmlb's runs but not a reboot (or a kernel with working KVM). */
function hostBootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

/** The second line of a verdict file written since the host started, else undefined. */
function rememberedLine(file: string): string | undefined {
  try {
    const [bootId, verdict] = readFileSync(file, 'utf8').split('\n');
    return bootId === hostBootId() ? verdict : undefined;
  } catch {
    return undefined;
  }
}

/** Whether a boot since the host started found that KVM passes the probe but fails guests; the probe cannot see that. */
function kvmFailedSinceBoot(verdictFile = KVM_VERDICT_FILE): boolean {
  return rememberedLine(verdictFile) !== undefined;
}

/** Records that KVM failed a guest here, with why: the next boots go straight to TCG instead of losing the time again. */
export function rememberKvmFailure(reason: string, verdictFile = KVM_VERDICT_FILE): void {
  writeFileSync(verdictFile, `${hostBootId()}\n${reason}\n`);
}
