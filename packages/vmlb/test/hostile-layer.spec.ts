import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import * as path from 'node:path';
import {
  describeLeftovers,
  findLeftovers,
  folderFingerprint,
  leftoverWatchersUnder,
  mountsUnder,
  processGroupMembers,
  processesWithArgument,
  releaseHostLeftovers,
  waitForCleanHost,
  waitForProcessGroupExit,
  watchLoops,
} from './support/host-state';
import { type NxRun, type RunningNx, NxWorkspace, startNx } from './support/nx-workspace';

// A layer script is run as root, but only the image, the layer's overlay
// and what its hints grant are its to change (docs/security.md, "Layer
// scripts"). Each test here is one script trying one way out, on a copy of
// images/tiny with real nx, disks, namespaces and chroots; after each, the
// host must be as it was: a canary folder made for the test (its files,
// folders, modes and contents), the host's /etc/resolv.conf byte for byte,
// a host-wide sysctl, the hostname, /dev/null's mode, the layer folder,
// and nothing left mounted, attached or running.

const MARKER = 'vmlb-test: the hostile script is running';
/** A host-wide sysctl a script tries to change (harmless either way; put back if a test ever changes it). */
const SYSCTL = '/proc/sys/kernel/printk_ratelimit_burst';

/**
 * Below the hostile layers: makes images/tiny look like a Debian-family
 * image with a resolv.conf (so vmlb writes policy-rc.d and binds a
 * resolv.conf), and makes /run a symlink to a folder that does not exist
 * (so vmlb creates that folder, /var/lib/vmlb-run, as /run's mount point
 * and removes it after each script). A modify-disk layer, because no
 * build-layer script can replace /run: it is mounted while the script runs.
 */
const PREPARE = `#!/bin/bash
set -euo pipefail
device="$3"
read -r start sectors < <(sfdisk --dump "$device" | sed -n 's/.*start= *\\([0-9]*\\), size= *\\([0-9]*\\).*/\\1 \\2/p')
part=$(losetup --find --show --offset $((start * 512)) --sizelimit $((sectors * 512)) "$device")
root=$(mktemp -d)
cleanup() { umount "$root" 2>/dev/null || true; rmdir "$root"; losetup -d "$part"; }
trap cleanup EXIT
mount "$part" "$root"
touch "$root/etc/debian_version"
echo 'nameserver 192.0.2.53' > "$root/etc/resolv.conf"
mkdir -p "$root/var/lib" "$root/usr/sbin"
ln -s /var/lib/vmlb-run "$root/run"
`;

describe('a hostile layer script: its writes stay in the image', () => {
  let workspace: NxWorkspace;
  /** A folder of the host the scripts aim at: a file, a host "policy-rc.d", an empty folder where vmlb's clean-up could be led. */
  let canary: string;
  let suspectLoops: string[] = [];
  const started: RunningNx[] = [];
  let hostBefore: ReturnType<typeof hostState>;

  const layerFolder = () => workspace.path('images/tiny/30_x');

  function hostState() {
    return {
      canary: folderFingerprint(canary),
      resolvConf: readFileSync('/etc/resolv.conf').toString('base64'),
      sysctl: readFileSync(SYSCTL, 'utf8'),
      hostname: hostname(),
      devNull: statSync('/dev/null').mode.toString(8),
      layerFolder: folderFingerprint(layerFolder()),
    };
  }

  /** The hostile layer: one script on top of the prepared image. */
  function hostile(...lines: string[]): void {
    rmSync(layerFolder(), { recursive: true, force: true });
    mkdirSync(layerFolder(), { recursive: true });
    writeFileSync(path.join(layerFolder(), 'build-layer'), ['#!/bin/sh', 'set -eu', ...lines, ''].join('\n'));
    chmodSync(path.join(layerFolder(), 'build-layer'), 0o755);
    hostBefore = hostState();
  }

  const build = () => workspace.nx(['run', 'tiny-30_x:build', '--output-style=static']);

  function expectFailure(run: NxRun, ...expected: Array<string | RegExp>): void {
    if (run.exitCode === 0) throw new Error(`nx succeeded; expected the layer to fail:\n${run.output}`);
    expect(run.output).toContain('Layer 30_x of image tiny: images/tiny/30_x/build-layer exited with code');
    for (const text of expected) expect(run.output).toMatch(text);
  }

  function expectSuccess(run: NxRun): void {
    if (run.exitCode !== 0) throw new Error(`nx exited with ${run.exitCode}; expected success:\n${run.output}`);
  }

  async function expectHostUnchanged(): Promise<void> {
    expect(hostState()).toEqual(hostBefore);
    const leftovers = await waitForCleanHost(workspace.root, { distDir: workspace.path('dist'), suspectLoops }, 15_000);
    expect(leftovers).toBe('');
  }

  beforeAll(async () => {
    workspace = new NxWorkspace({ images: ['tiny'] });
    mkdirSync(workspace.path('images/tiny/25_prepare'));
    writeFileSync(workspace.path('images/tiny/25_prepare/modify-disk'), PREPARE, { mode: 0o755 });
    canary = mkdtempSync(path.join(tmpdir(), 'vmlb-canary-'));
    writeFileSync(path.join(canary, 'secret.txt'), 'a file of the host\n');
    mkdirSync(path.join(canary, 'sbin'));
    writeFileSync(path.join(canary, 'sbin', 'policy-rc.d'), "#!/bin/sh\n# the host's own\nexit 0\n", { mode: 0o755 });
    mkdirSync(path.join(canary, 'lib', 'vmlb-run'), { recursive: true });
    const run = await workspace.nx(['build', 'image-tiny', '--output-style=static']);
    if (run.exitCode !== 0) throw new Error(`building images/tiny failed:\n${run.output}`);
  }, 240_000);

  afterEach(async () => {
    for (const running of started.splice(0)) {
      if (processGroupMembers(running.pid).length > 0) process.kill(-running.pid, 'SIGKILL');
      await waitForProcessGroupExit(running.pid, 10_000);
    }
    const released = await releaseHostLeftovers(workspace.root, { distDir: workspace.path('dist'), suspectLoops });
    if (released.length) console.warn(`released what the test left behind:\n${released.join('\n')}`);
    suspectLoops = [];
    if (hostBefore && readFileSync(SYSCTL, 'utf8') !== hostBefore.sysctl) writeFileSync(SYSCTL, hostBefore.sysctl);
    rmSync(workspace.path('dist/images/tiny/30_x.qcow2'), { force: true });
    rmSync(workspace.path('dist/images/tiny/30_x.digest'), { force: true });
  }, 60_000);

  afterAll(async () => {
    if (!workspace) return;
    await releaseHostLeftovers(workspace.root, { distDir: workspace.path('dist'), suspectLoops });
    const mounted = mountsUnder(workspace.root);
    if (mounted.length) throw new Error(`not removing ${workspace.root}: still mounted: ${mounted.map((mount) => mount.mountPoint).join(', ')}`);
    workspace.remove();
    rmSync(canary, { recursive: true, force: true });
  }, 60_000);

  it("writes the host's resolv.conf through the image's: a read-only copy, the write fails", async () => {
    hostile('cat /etc/resolv.conf', 'echo nameserver 1.1.1.1 > /etc/resolv.conf');
    const run = await build();
    expectFailure(run, /can't create \/etc\/resolv.conf: Read-only file system/);
    // The script saw the host's resolvers, not the image's.
    expect(run.output).toContain(readFileSync('/etc/resolv.conf', 'utf8').trim().split('\n')[0]);
    await expectHostUnchanged();
  }, 120_000);

  it("writes a host file through /proc/1/root: the namespace's first process is in the image too", async () => {
    hostile(`readlink /proc/1/root`, `echo pwned > /proc/1/root${canary}/secret.txt`);
    const run = await build();
    expectFailure(run, /nonexistent directory/);
    await expectHostUnchanged();
  }, 120_000);

  it('writes a host file through any process of its /proc: every one is in the image', async () => {
    hostile(
      `for root in /proc/[0-9]*/root; do if echo pwned 2>/dev/null > "$root${canary}/secret.txt"; then echo "escaped through $root"; exit 0; fi; done`,
      'exit 3',
    );
    const run = await build();
    expectFailure(run, /exited with code 3/);
    expect(run.output).not.toContain('escaped through');
    await expectHostUnchanged();
  }, 120_000);

  it('climbs out of the chroot with a second chroot: no cap_sys_chroot', async () => {
    hostile('mkdir -p /deeper', 'chroot /deeper /bin/sh -c "cd ../../..; echo pwned > .' + canary + '/secret.txt"');
    expectFailure(await build(), /chroot: can't change root directory to '\/deeper': Operation not permitted/);
    await expectHostUnchanged();
  }, 120_000);

  it('remounts /mnt (the layer folder, in the repository) read-write: no mount at all', async () => {
    hostile('mount -o remount,bind,rw /mnt', 'echo pwned > /mnt/escaped');
    expectFailure(await build(), /mount: permission denied/);
    await expectHostUnchanged();
  }, 120_000);

  it('writes a host-wide sysctl under /proc/sys: read-only', async () => {
    hostile(`echo 123 > ${SYSCTL}`);
    expectFailure(await build(), /Read-only file system/);
    await expectHostUnchanged();
  }, 120_000);

  it("sets the host's hostname, through /proc/sys and with hostname: neither reaches the host", async () => {
    hostile('hostname pwned || true', 'echo pwned > /proc/sys/kernel/hostname');
    expectFailure(await build(), /hostname: sethostname: Operation not permitted/, /Read-only file system/);
    await expectHostUnchanged();
  }, 120_000);

  it('remounts /sys read-write: no mount at all', async () => {
    hostile('mount -o remount,rw /sys');
    expectFailure(await build(), /mount: permission denied/);
    await expectHostUnchanged();
  }, 120_000);

  it('makes a block device node of a loop device and writes to it: no cap_mknod', async () => {
    hostile('mknod /tmp/disk b 7 0', 'dd if=/dev/zero of=/tmp/disk bs=512 count=1');
    expectFailure(await build(), /mknod: \/tmp\/disk: Operation not permitted/);
    await expectHostUnchanged();
  }, 120_000);

  it("keeps none of the capabilities that reach the kernel: modules, mount, chroot, raw I/O, reboot, clock, mknod, the host's network", async () => {
    hostile('grep CapBnd /proc/self/status', 'grep CapEff /proc/self/status');
    const run = await build();
    expectSuccess(run);
    const bounding = BigInt(`0x${/CapBnd:\s*([0-9a-f]+)/.exec(run.output)![1]}`);
    const effective = BigInt(`0x${/CapEff:\s*([0-9a-f]+)/.exec(run.output)![1]}`);
    expect(effective).toBe(bounding);
    // capability.h numbers
    const has = (bit: number) => (bounding >> BigInt(bit)) & 1n;
    const dropped = {
      dac_read_search: 2,
      net_admin: 12,
      net_raw: 13,
      sys_module: 16,
      sys_rawio: 17,
      sys_chroot: 18,
      sys_ptrace: 19,
      sys_admin: 21,
      sys_boot: 22,
      sys_time: 25,
      mknod: 27,
      syslog: 34,
      bpf: 39,
    };
    const kept = { chown: 0, dac_override: 1, fowner: 3, fsetid: 4, kill: 5, setgid: 6, setuid: 7, setfcap: 31 };
    expect(Object.fromEntries(Object.entries(dropped).map(([name, bit]) => [name, has(bit)]))).toEqual(
      Object.fromEntries(Object.keys(dropped).map((name) => [name, 0n])),
    );
    expect(Object.fromEntries(Object.entries(kept).map(([name, bit]) => [name, has(bit)]))).toEqual(
      Object.fromEntries(Object.keys(kept).map((name) => [name, 1n])),
    );
    await expectHostUnchanged();
  }, 120_000);

  it("writes to /dev/tty (keystrokes into the user's terminal): it has no terminal", async () => {
    hostile('echo pwned > /dev/tty');
    expectFailure(await build(), /can't create \/dev\/tty: No such device or address/);
    await expectHostUnchanged();
  }, 120_000);

  it("changes the mode of /dev/null: the sandbox's own node changes, the host's does not", async () => {
    hostile('chmod 600 /dev/null', 'ls -l /dev/null');
    const run = await build();
    expectSuccess(run);
    expect(run.output).toMatch(/crw------- .* \/dev\/null/);
    await expectHostUnchanged();
  }, 120_000);

  it("plants symlinks where vmlb cleans up after it (/usr/sbin for policy-rc.d, a folder above a mount point vmlb made): vmlb's clean-up follows none", async () => {
    hostile(
      // policy-rc.d is vmlb's while the script runs: the script replaces the folder holding it.
      'test -x /usr/sbin/policy-rc.d',
      'rm -rf /usr/sbin',
      `ln -s ${canary}/sbin /usr/sbin`,
      // /run leads to /var/lib/vmlb-run, which vmlb made for the run and removes after it.
      'mv /var /var.moved',
      `ln -s ${canary} /var`,
    );
    const run = await build();
    expectSuccess(run);
    await expectHostUnchanged();
  }, 120_000);

  it('leaves processes running in the background, even in a session of their own: none outlives the script', async () => {
    hostile('sleep 3017 &', 'setsid sleep 3018 &', 'nohup sleep 3019 > /dev/null 2>&1 &', 'sleep 0.2');
    const run = await build();
    expectSuccess(run);
    expect(processesWithArgument('3017').concat(processesWithArgument('3018'), processesWithArgument('3019'))).toEqual([]);
    await expectHostUnchanged();
  }, 120_000);

  it('SIGKILL to the build process alone (the OOM killer, kill -9 <pid>): the script and its namespace die with it, nothing is left mounted, attached or running', async () => {
    hostile(`echo '${MARKER}'`, 'sleep 3021 &', 'exec sleep 3022');
    const loops = watchLoops(workspace.root);
    const running = startNx(workspace, ['run', 'tiny-30_x:build', '--output-style=stream']);
    started.push(running);
    try {
      await running.waitForOutput(MARKER, 90_000);
    } finally {
      suspectLoops = await loops.stop();
    }
    expect(processesWithArgument('3022')).toHaveLength(1);
    // The process running the layer executor: the one its leftover watcher watches.
    const watchers = leftoverWatchersUnder(workspace.root);
    expect(watchers).toHaveLength(1);
    const owner = (JSON.parse(readFileSync(`/proc/${watchers[0]}/cmdline`, 'utf8').split('\0')[2]) as { owner: number }).owner;
    expect(owner).not.toBe(running.pid);
    process.kill(owner, 'SIGKILL');

    const ended = await running.exited;
    expect(ended.exitCode).not.toBe(0);
    expect(await waitForCleanHost(workspace.root, { distDir: workspace.path('dist'), suspectLoops }, 30_000)).toBe('');
    expect(processesWithArgument('3021').concat(processesWithArgument('3022'))).toEqual([]);
    expect(describeLeftovers(await findLeftovers(workspace.root, { distDir: workspace.path('dist'), suspectLoops }))).toBe('');
    await expectHostUnchanged();
  }, 180_000);
});
