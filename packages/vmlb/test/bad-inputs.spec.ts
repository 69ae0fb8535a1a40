import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';
import { readFilesFromImage } from './support/disk-read';
import { describeLeftovers, findLeftovers, releaseHostLeftovers } from './support/host-state';
import { type NxRun, NxWorkspace, REPO_ROOT, nxEnvironment } from './support/nx-workspace';

// Bad input, end to end through `nx build`: each case must fail (exit not
// 0) with a message that names the file or layer and the fix, lose nothing
// (the layers already built keep their bytes) and leave nothing on the host.
// Cases checked only by unit specs elsewhere are run here for real; the
// catalogue of every case and the test covering it is in
// docs/troubleshooting.md.

const NX = path.join(REPO_ROOT, 'node_modules/nx/dist/bin/nx.js');

describe('bad input', () => {
  let workspace: NxWorkspace;
  let builtBefore: Record<string, string>;
  const image = (...parts: string[]) => workspace.path('images/tiny', ...parts);
  const dist = (...parts: string[]) => workspace.path('dist/images/tiny', ...parts);

  /** The digest of every built file: what a failed build must not change. */
  const builtLayers = () =>
    Object.fromEntries(
      readdirSync(dist())
        .filter((name) => name.endsWith('.digest'))
        .sort()
        .map((name) => [name, readFileSync(dist(name), 'utf8')]),
    );

  function writeLayer(layer: string, file: string, text: string, mode = 0o755): void {
    mkdirSync(image(layer), { recursive: true });
    writeFileSync(image(layer, file), text, { mode });
    chmodSync(image(layer, file), mode);
  }

  async function expectFailure(run: NxRun, ...messages: Array<string | RegExp>): Promise<void> {
    if (run.exitCode === 0) throw new Error(`nx succeeded; expected a failure:\n${run.output}`);
    for (const message of messages) {
      if (typeof message === 'string') expect(run.output).toContain(message);
      else expect(run.output).toMatch(message);
    }
    expect(builtLayers()).toEqual(builtBefore);
    expect(describeLeftovers(await findLeftovers(workspace.root))).toBe('');
  }

  const build = () => workspace.nx(['build', 'image-tiny', '--output-style=static']);

  beforeAll(async () => {
    workspace = new NxWorkspace({ images: ['tiny'] });
    await workspace.nxOk(['build', 'image-tiny']);
  }, 300_000);

  beforeEach(() => {
    builtBefore = builtLayers();
  });

  afterEach(async () => {
    const released = await releaseHostLeftovers(workspace.root);
    if (released.length) console.warn(`released what the test left behind:\n${released.join('\n')}`);
    rmSync(image(), { recursive: true, force: true });
    cpSync(path.join(REPO_ROOT, 'images/tiny'), image(), { recursive: true });
  }, 60_000);

  afterAll(() => workspace?.remove());

  it('image.json that is not JSON: names the file', async () => {
    writeFileSync(image('image.json'), '{"base": {"empty": "64M"},\n');
    await expectFailure(await build(), 'images/tiny/image.json');
  }, 120_000);

  it('an unknown base kind: names the file and the kinds there are', async () => {
    writeFileSync(image('image.json'), JSON.stringify({ base: { iso: 'debian.iso' } }));
    await expectFailure(await build(), /images\/tiny\/image\.json does not match the image schema/);
  }, 120_000);

  it('a layer folder with both scripts, and one with none', async () => {
    writeLayer('30_both', 'build-layer', '#!/bin/sh\n');
    writeLayer('30_both', 'modify-disk', '#!/bin/sh\n');
    mkdirSync(image('40_empty'));
    await expectFailure(
      await build(),
      'images/tiny/30_both holds both build-layer and modify-disk; a layer runs exactly one script.',
      'images/tiny/40_empty is a layer folder but holds neither build-layer nor modify-disk.',
    );
  }, 120_000);

  it('a script without a #! line', async () => {
    writeLayer('30_x', 'build-layer', 'echo no interpreter\n');
    await expectFailure(await build(), 'images/tiny/30_x/build-layer has no #! line, so it cannot be run. Make its first line name its interpreter, e.g. #!/bin/sh');
  }, 120_000);

  it('two layers with the same number', async () => {
    writeLayer('20_other', 'build-layer', '#!/bin/sh\n');
    await expectFailure(await build(), 'images/tiny: layers 20_motd and 20_other share the number 20, so their order is ambiguous. Renumber one of them.');
  }, 120_000);

  it('a # chroot-bind-mount source outside the layer folder', async () => {
    writeLayer('30_x', 'build-layer', '#!/bin/sh\n# chroot-bind-mount ../../../etc /host-etc\ntouch /host-etc/escaped\n');
    await expectFailure(await build(), "bind-mount source '../../../etc' must be a path inside the layer folder, relative to it");
  }, 120_000);

  it('a # chroot-bind-mount source that is a symlink out of the layer folder: refused, nothing escapes', async () => {
    const outside = mkdtempSync(path.join(tmpdir(), 'vmlb-outside-'));
    try {
      writeLayer('30_x', 'build-layer', '#!/bin/sh\n# chroot-bind-mount data /data\ntouch /data/escaped\n');
      symlinkSync(outside, image('30_x', 'data'));
      await expectFailure(await build(), `chroot-bind-mount source 'data' resolves to ${outside}, outside the layer folder`);
      expect(readdirSync(outside)).toEqual([]);
    } finally {
      rmSync(outside, { recursive: true, force: true });
    }
  }, 120_000);

  it('a script writing into /mnt (the layer folder), through a symlink it planted: read-only, nothing escapes', async () => {
    writeLayer('30_x', 'build-layer', '#!/bin/sh\nset -e\nln -s /mnt /tmp/to-host\necho escaped > /tmp/to-host/escaped\n');
    await expectFailure(await build(), 'Layer 30_x of image tiny: images/tiny/30_x/build-layer exited with code', /Read-only file system/);
    expect(existsSync(image('30_x', 'escaped'))).toBe(false);
  }, 120_000);

  it('# disk-size smaller than the parent disk', async () => {
    writeLayer('30_x', 'modify-disk', '#!/bin/sh\n# disk-size 32M\ntrue\n');
    await expectFailure(
      await build(),
      "# disk-size 32 MiB for layer 30_x (images/tiny/30_x/modify-disk) is smaller than its parent 20_motd.qcow2 (64 MiB); # disk-size must be at least the parent's size (64 MiB)",
    );
    expect(existsSync(dist('.30_x.qcow2.partial'))).toBe(false);
  }, 120_000);

  it('qemu tools missing from PATH: lists them with the install command', async () => {
    writeLayer('30_x', 'build-layer', '#!/bin/sh\necho needs a build\n');
    // Every command of the host but qemu's.
    const bin = mkdtempSync(path.join(tmpdir(), 'vmlb-path-'));
    try {
      for (const folder of ['/usr/local/bin', '/usr/bin', '/usr/sbin']) {
        for (const name of existsSync(folder) ? readdirSync(folder) : []) {
          if (!name.startsWith('qemu') && !existsSync(path.join(bin, name))) symlinkSync(path.join(folder, name), path.join(bin, name));
        }
      }
      const run = await workspace.nx(['build', 'image-tiny', '--output-style=static'], { env: { PATH: bin } });
      await expectFailure(run, 'qemu-img', 'qemu-storage-daemon', /apt-get install/);
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  }, 120_000);

  it('/dev/fuse missing: says how to get it, or to use --nbd', async () => {
    writeLayer('30_x', 'build-layer', '#!/bin/sh\necho needs a build\n');
    const notADevice = path.join(mkdtempSync(path.join(tmpdir(), 'vmlb-nofuse-')), 'fuse');
    writeFileSync(notADevice, '');
    try {
      // In a mount namespace of its own, a regular file covers /dev/fuse: the host's stays as it is.
      const result = await execa(
        'unshare',
        ['--mount', '--propagation', 'private', '--', 'sh', '-c', 'mount --bind "$0" /dev/fuse && exec "$@"', notADevice, process.execPath, NX, 'build', 'image-tiny', '--output-style=static'],
        { cwd: workspace.root, all: true, reject: false, env: nxEnvironment() },
      );
      await expectFailure({ exitCode: result.exitCode ?? -1, output: String(result.all) }, '/dev/fuse (a character device): load the fuse module (modprobe fuse)', '--nbd /dev/nbd0');
    } finally {
      rmSync(path.dirname(notADevice), { recursive: true, force: true });
    }
  }, 120_000);

  it('not root: says vmlb must run as root', async () => {
    writeLayer('30_x', 'build-layer', '#!/bin/sh\necho needs a build\n');
    const project = JSON.parse(await workspace.nxOk(['show', 'project', 'tiny-30_x', '--json']));
    // The layer executor as Nx's task process runs it, as user nobody (nx itself would stop earlier, on its own files).
    chmodSync(workspace.root, 0o755);
    const result = spawnSync(
      'setpriv',
      ['--reuid=65534', '--regid=65534', '--clear-groups', '--', process.execPath, path.join(__dirname, 'support/run-layer-executor.js'), JSON.stringify(project.targets.build.options), 'tiny-30_x'],
      { cwd: workspace.root, encoding: 'utf8', env: { ...process.env, ...nxEnvironment() } as NodeJS.ProcessEnv },
    );
    chmodSync(workspace.root, 0o700);
    await expectFailure({ exitCode: result.status ?? -1, output: `${result.stdout}${result.stderr}` }, 'root: vmlb attaches disks, mounts filesystems and runs chroots; run it as root');
  }, 120_000);

  it('a layer folder renamed between two builds: the next build uses the new name and its chain is sound', async () => {
    renameSync(image('20_motd'), image('20_banner'));
    const output = await workspace.nxOk(['build', 'image-tiny']);
    expect(output).toContain('nx run tiny-20_banner:build');
    expect(readlinkSync(dist('image.qcow2'))).toBe('20_banner.qcow2');
    const { stdout } = await execa('qemu-img', ['info', '--output=json', dist('20_banner.qcow2')]);
    expect(JSON.parse(stdout)['backing-filename']).toBe('10_hello.qcow2');
    expect(await readFilesFromImage(dist('image.qcow2'), ['/etc/motd'])).toEqual({ '/etc/motd': 'Welcome to tiny, built by vmlb.' });
    expect(describeLeftovers(await findLeftovers(workspace.root))).toBe('');
  }, 180_000);
});
