import { readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { sha256File } from '../src/lib/cache-identity/digest';
import { NxWorkspace, startNx } from './support/nx-workspace';
import { waitForProcessGroupExit } from './support/host-state';

/** Boots images/tiny-boot (extlinux, Debian's kernel, busybox init) under qemu in check mode. */
describe('nx run image-tiny-boot:test-boot', () => {
  let workspace: NxWorkspace;
  const dist = (...parts: string[]) => workspace.path('dist/images/tiny-boot', ...parts);
  const chainDigests = async () =>
    Object.fromEntries(
      await Promise.all(
        readdirSync(dist())
          .filter((file) => file.endsWith('.qcow2'))
          .map(async (file) => [file, await sha256File(dist(file))] as const),
      ),
    );
  /** qemu processes of the boot that printed `output`: found by the guest's ssh port, so that another boot on the host (another suite, an e2e) is never counted. */
  const qemuProcesses = (output: string) => {
    const port = /guest ssh on 127\.0\.0\.1:(\d+)/.exec(output)?.[1];
    if (!port) throw new Error(`test-boot printed no ssh port:\n${output}`);
    return readdirSync('/proc')
      .filter((entry) => /^\d+$/.test(entry))
      .map((pid) => {
        try {
          return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
        } catch {
          return '';
        }
      })
      .filter((commandLine) => commandLine.startsWith('qemu-system') || commandLine.includes('/qemu-system'))
      .filter((commandLine) => commandLine.includes(`hostfwd=tcp:127.0.0.1:${port}-`));
  };

  beforeAll(async () => {
    workspace = new NxWorkspace({ images: ['tiny-boot'] });
    await workspace.nxOk(['build', 'image-tiny-boot']);
  });
  afterAll(() => workspace.remove());

  it('sees the marker, passes, leaves the image unchanged and no qemu running', async () => {
    const before = await chainDigests();
    const output = await workspace.nxOk(['run', 'image-tiny-boot:test-boot', '--check']);
    // The guest's console can break its line anywhere (kernel messages interleave): match it with line breaks taken out.
    // qemu is stopped as soon as the marker is seen, so what the guest printed after it on that line may never arrive.
    expect(output.replace(/\r?\n/g, '')).toMatch(/tiny-boot: init\s*reached/);
    expect(output).toMatch(/vmlb: image tiny-boot booted: \/tiny-boot: init reached\/ appeared after \d+\.\d s/);
    expect(output).toMatch(/KVM is not usable here|booting/);
    expect(await chainDigests()).toEqual(before);
    expect(readFileSync(dist('test-boot.log'), 'utf8').replace(/\r?\n/g, '')).toMatch(/tiny-boot: init\s*reached/);
    expect(qemuProcesses(output)).toEqual([]);
  });

  it('fails with the console tail and the log path when the expected text never appears', async () => {
    const run = await workspace.nx(['run', 'image-tiny-boot:test-boot', '--check', '--expect=never printed by this guest', '--timeout=90']);
    expect(run.exitCode).not.toBe(0);
    expect(run.output).toMatch(
      /test-boot of image tiny-boot failed after \d+\.\d s: qemu exited \(code 0\) before \/never printed by this guest\/ appeared on the console/,
    );
    expect(run.output).toMatch(/Last 40 console lines:\n[\s\S]*reboot: Power down/);
    expect(run.output).toContain('The whole console is in dist/images/tiny-boot/test-boot.log.');
    expect(qemuProcesses(run.output)).toEqual([]);
  });

  it('stops the guest at the timeout', async () => {
    const run = await workspace.nx(['run', 'image-tiny-boot:test-boot', '--check', '--expect=never printed', '--timeout=2']);
    expect(run.exitCode).not.toBe(0);
    expect(run.output).toContain('/never printed/ did not appear on the console within 2 s');
    expect(qemuProcesses(run.output)).toEqual([]);
  });

  it.each(['SIGINT', 'SIGTERM'] as const)('stops qemu and removes its overlay on %s', async (signal) => {
    const bootDirs = () => readdirSync(tmpdir()).filter((entry) => entry.startsWith('vmlb-boot-'));
    const before = new Set(bootDirs());
    const nx = startNx(workspace, ['run', 'image-tiny-boot:test-boot', '--check', '--expect=never printed', '--timeout=300']);
    await nx.waitForOutput('vmlb: booting', 60_000);
    await new Promise((resolve) => setTimeout(resolve, 2000));
    expect(qemuProcesses(nx.output())).toHaveLength(1);
    process.kill(-nx.pid, signal);
    const result = await nx.exited;
    expect(result.exitCode === 0 && result.signal === undefined).toBe(false);
    // nx can exit before the task process it forwarded the signal to has finished cleaning up.
    expect(await waitForProcessGroupExit(nx.pid, 60_000)).toBe(true);
    expect(qemuProcesses(result.output)).toEqual([]);
    expect(bootDirs().filter((entry) => !before.has(entry))).toEqual([]);
  });

  it('boots any disk given with --image, such as a flattened export', async () => {
    await workspace.nxOk(['build', 'image-tiny-boot', '--flatten']);
    const flattened = path.join('dist/images/tiny-boot/image.qcow2');
    const output = await workspace.nxOk(['run', 'image-tiny-boot:test-boot', '--check', `--image=${flattened}`]);
    expect(output).toContain(`vmlb: booting ${flattened}`);
    expect(output).toMatch(/image tiny-boot booted/);
  });

  it('boots an export in another format: a vmdk written by the flatten target', async () => {
    await workspace.nxOk(['run', 'image-tiny-boot:flatten', '--format=vmdk']);
    const vmdk = 'dist/images/tiny-boot/export/vmdk/tiny-boot.vmdk';
    const output = await workspace.nxOk(['run', 'image-tiny-boot:test-boot', '--check', `--image=${vmdk}`]);
    expect(output).toContain(`vmlb: booting ${vmdk}`);
    expect(output).toMatch(/image tiny-boot booted/);
  });
});
