import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { TempWorkspace } from '../../testing/temp-workspace';
import { bootAndCheck } from './qemu-boot';
import { kvmUsable, rememberKvmFailure } from './kvm-probe';

/**
 * The KVM probe against stand-in qemu binaries (shell scripts): one that
 * aborts as qemu does when the host's KVM lacks an MSR, one that reaches
 * SeaBIOS's "Booting from", one that hangs. The device is a plain file the
 * test can open, so the probe runs whether or not this host has /dev/kvm.
 */
describe('kvmUsable', () => {
  let workspace: TempWorkspace;
  let dir: string;
  let device: string;
  const standIn = (name: string, body: string) => workspace.write(name, `#!/bin/sh\n${body}\n`, { executable: true });

  beforeEach(() => {
    workspace = new TempWorkspace();
    dir = workspace.root;
    device = workspace.write('kvm', '');
  });
  afterEach(() => workspace.remove());

  it('is false as soon as qemu dies by a signal, without waiting for the probe deadline', async () => {
    // With a probe deadline of a minute, only noticing the abort ends this test within its 10 s.
    const qemu = standIn('qemu-aborts', 'echo "failed to set MSR 0x10a" >&2; kill -ABRT $$');
    await expect(kvmUsable({}, { device, qemu, timeoutMs: 60_000, verdictFile: path.join(dir, 'verdict') })).resolves.toBe(false);
  }, 10_000);

  it('is false as soon as qemu exits with an error', async () => {
    const qemu = standIn('qemu-fails', 'exit 1');
    await expect(kvmUsable({}, { device, qemu, timeoutMs: 60_000, verdictFile: path.join(dir, 'verdict') })).resolves.toBe(false);
  }, 10_000);

  it('is true once the firmware prints "Booting from" on the debug console', async () => {
    const qemu = standIn('qemu-boots', 'log=$(printf "%s\\n" "$@" | sed -n "s/^file://p"); printf "Booting from Hard Disk...\\n" > "$log"; exec sleep 60');
    await expect(kvmUsable({}, { device, qemu, timeoutMs: 60_000, verdictFile: path.join(dir, 'verdict') })).resolves.toBe(true);
  }, 10_000);

  it('is false when the firmware says nothing before the deadline, and the probe machine is stopped', async () => {
    const pidFile = path.join(dir, 'qemu.pid');
    const qemu = standIn('qemu-hangs', `echo $$ > ${pidFile}; exec sleep 60`);
    await expect(kvmUsable({}, { device, qemu, timeoutMs: 300, verdictFile: path.join(dir, 'verdict') })).resolves.toBe(false);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    expect(() => process.kill(pid, 0)).toThrow();
  });

  it('is false without a probe once a boot found that KVM fails guests on this host, until the host restarts', async () => {
    const qemu = standIn('qemu-boots-too', `touch ${path.join(dir, 'ran')}; exit 1`);
    const verdictFile = path.join(dir, 'verdict');
    rememberKvmFailure('KVM made no progress', verdictFile);
    await expect(kvmUsable({}, { device, qemu, verdictFile })).resolves.toBe(false);
    expect(existsSync(path.join(dir, 'ran'))).toBe(false);
    // A verdict from an earlier boot of the host does not count.
    workspace.write('verdict', 'another-boot-id\nKVM made no progress\n');
    await expect(kvmUsable({ VMLB_ACCEL: 'kvm' }, { device, qemu, verdictFile })).resolves.toBe(true);
    await expect(kvmUsable({}, { device, qemu, verdictFile })).resolves.toBe(false);
    expect(existsSync(path.join(dir, 'ran'))).toBe(true);
  });

  it('keeps a definite probe verdict until the host restarts, and probes again after one that ran out of time', async () => {
    const verdictFile = path.join(dir, 'verdict');
    const runs = path.join(dir, 'runs');
    const qemu = standIn(
      'qemu-counts',
      `echo run >> ${runs}; log=$(printf "%s\\n" "$@" | sed -n "s/^file://p"); printf "Booting from Hard Disk...\\n" > "$log"; exec sleep 60`,
    );
    await expect(kvmUsable({}, { device, qemu, timeoutMs: 60_000, verdictFile })).resolves.toBe(true);
    await expect(kvmUsable({}, { device, qemu, timeoutMs: 60_000, verdictFile })).resolves.toBe(true);
    expect(readFileSync(runs, 'utf8')).toBe('run\n');
    // A verdict from an earlier boot of the host does not count.
    workspace.write('verdict-probe', 'another-boot-id\nusable\n');
    const hangs = standIn('qemu-hangs-once', `echo run >> ${runs}; exec sleep 60`);
    await expect(kvmUsable({}, { device, qemu: hangs, timeoutMs: 300, verdictFile })).resolves.toBe(false);
    await expect(kvmUsable({}, { device, qemu: hangs, timeoutMs: 300, verdictFile })).resolves.toBe(false);
    expect(readFileSync(runs, 'utf8')).toBe('run\nrun\nrun\n');
  }, 20_000);

  it('is false without a usable KVM device, and VMLB_ACCEL decides without a probe', async () => {
    const qemu = standIn('qemu-never-run', `touch ${path.join(dir, 'ran')}; exit 1`);
    await expect(kvmUsable({}, { device: path.join(dir, 'missing'), qemu, verdictFile: path.join(dir, 'verdict') })).resolves.toBe(false);
    await expect(kvmUsable({ VMLB_ACCEL: 'kvm' }, { device: path.join(dir, 'missing'), qemu, verdictFile: path.join(dir, 'verdict') })).resolves.toBe(true);
    await expect(kvmUsable({ VMLB_ACCEL: 'tcg' }, { device, qemu, verdictFile: path.join(dir, 'verdict') })).resolves.toBe(false);
    expect(existsSync(path.join(dir, 'ran'))).toBe(false);
  });
});

/**
 * A boot under KVM that qemu reports as an emulation failure (nested
 * virtualisation: the firmware ran, the bootloader's code does not) must
 * end at once and say so, rather than wait out the check's timeout while the
 * guest hangs. A stand-in qemu-system-x86_64 on PATH plays both machines.
 */
describe('bootAndCheck on a host where KVM fails the guest', () => {
  let workspace: TempWorkspace;
  const savedPath = process.env.PATH;
  beforeEach(() => {
    workspace = new TempWorkspace();
    const script =
      'case "$*" in *"-accel kvm"*) echo "KVM internal error. Suberror: 1" >&2; echo "emulation failure" >&2; exec sleep 60;; esac\necho "debian login:"; exec sleep 60';
    workspace.write('bin/qemu-system-x86_64', `#!/bin/sh\n${script}\n`, { executable: true });
    process.env.PATH = `${workspace.path('bin')}:${savedPath}`;
  });
  afterEach(() => {
    process.env.PATH = savedPath;
    workspace.remove();
  });

  const machine = (kvm: boolean) => ({
    disk: workspace.path('disk.qcow2'),
    format: 'qcow2',
    scratchDir: workspace.root,
    memory: '64M',
    cpus: 1,
    sshPort: 2222,
    kvm,
    logFile: workspace.path(`console-${kvm}.log`),
  });

  // The check would wait 60 s for its marker; only noticing the failure ends this test within its 40 s.
  it('takes a console that stays silent under KVM for a stall, and ends the boot', async () => {
    workspace.write('bin/qemu-system-x86_64', '#!/bin/sh\necho "Loading Linux 6.1.0-50-cloud-amd64 ..."\nexec sleep 60\n', { executable: true });
    const result = await bootAndCheck(machine(true), { expect: /login:/, timeoutMs: 60_000, kvmStallMs: 1_000 });
    expect(result).toMatchObject({ passed: false, kvmFailed: true, reason: 'KVM made no progress: the console stayed silent for 1 s' });
    expect(result.consoleTail).toContain('Loading Linux');
  }, 40_000);

  it('reports the KVM failure at once, and the same boot passes under TCG', async () => {
    const check = { expect: /login:/, timeoutMs: 60_000 };
    const underKvm = await bootAndCheck(machine(true), check);
    expect(underKvm).toMatchObject({ passed: false, kvmFailed: true, reason: 'KVM could not run the guest (qemu: KVM internal error, emulation failure)' });
    await expect(bootAndCheck(machine(false), check)).resolves.toMatchObject({ passed: true });
  }, 40_000);
});
