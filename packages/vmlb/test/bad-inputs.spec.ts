import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';
import { readFilesFromImage } from './support/disk-read';
import { describeLeftovers, findLeftovers } from './support/host-state';
import { type NxRun, NxWorkspace, REPO_ROOT, cacheHits, nxEnvironment } from './support/nx-workspace';
import { tearDownHost } from './support/host-teardown';

// Bad input, end to end through `nx build`: each case must fail (exit not
// 0) with a message that names the file or layer and the fix, lose nothing
// (every file of the image already built keeps its bytes) and leave nothing
// on the host. Cases checked only by unit specs elsewhere are run here for
// real; the catalogue of every case and the test covering it is in
// docs/troubleshooting.md.

const NX = path.join(REPO_ROOT, 'node_modules/nx/dist/bin/nx.js');
/** The layers of images/tiny; any other layer's files in dist/ were left by a test. */
const TINY_LAYERS = ['00_disk', '10_hello', '20_motd'];
const sha256 = (bytes: Buffer | string) => createHash('sha256').update(bytes).digest('hex');
/**
 * The one file of the built image a failed layer build may replace: Nx
 * hashes the base task with the image project's configuration, which names
 * the last layer, so a build with a layer added runs the base again or
 * restores another cached run of it (same base.qcow2 and base.digest, another
 * build record). The base cases, where that task fails, check it is kept.
 */
const BASE_MANIFEST = 'base.manifest.json';
const withoutBaseManifest = (files: Record<string, string>) => Object.fromEntries(Object.entries(files).filter(([name]) => name !== BASE_MANIFEST));

describe('bad input', () => {
  let workspace: NxWorkspace;
  let builtBefore: Record<string, string>;
  const image = (...parts: string[]) => workspace.path('images/tiny', ...parts);
  const dist = (...parts: string[]) => workspace.path('dist/images/tiny', ...parts);

  /** Every file of the built image (sha256 of its bytes, or where a link points): what a failed build must not change. */
  const builtFiles = () =>
    Object.fromEntries(
      readdirSync(dist(), { withFileTypes: true })
        .filter((entry) => !entry.isDirectory())
        .map((entry) => entry.name)
        .sort()
        .map((name) => [name, name === 'image.qcow2' ? `-> ${readlinkSync(dist(name))}` : sha256(readFileSync(dist(name)))]),
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
    expect(withoutBaseManifest(builtFiles())).toEqual(withoutBaseManifest(builtBefore));
    expect(describeLeftovers(await findLeftovers(workspace.root))).toBe('');
  }

  const build = (env: Record<string, string> = {}) => workspace.nx(['build', 'image-tiny', '--output-style=static'], { env });
  /** The line vmlb prints when a layer build starts, before it touches any disk. */
  const started = (layer: string) => `${layer} of image tiny: in no cache, building`;

  beforeAll(async () => {
    workspace = new NxWorkspace({ images: ['tiny'] });
    await workspace.nxOk(['build', 'image-tiny']);
  }, 300_000);

  beforeEach(() => {
    builtBefore = builtFiles();
  });

  afterEach(async () => {
    await tearDownHost(workspace, { restoreImages: ['tiny'] });
    // Layers a test added and built do not belong to the next test.
    for (const name of readdirSync(dist())) {
      const layer = /^([0-9]{2,}_[^.]+)\./.exec(name)?.[1];
      if (layer && !TINY_LAYERS.includes(layer)) rmSync(dist(name), { force: true });
    }
  }, 60_000);

  afterAll(() => workspace?.remove());

  describe('found while Nx reads the workspace (before any task runs)', () => {
    it('image.json that is not JSON: names the file, the line and column, and the usual fix', async () => {
      writeFileSync(image('image.json'), '{"base": {"empty": "64M"},\n');
      await expectFailure(
        await build(),
        '  - images/tiny/image.json:\n',
        'images/tiny/image.json is not valid JSON: Expected double-quoted property name at the end of the file (line 2, column 1). ' +
          'Fix the JSON there: a comma before a closing brace, or a missing comma, quote or brace, is the usual cause.',
      );
    }, 120_000);

    it('an unknown base kind: names the file and the kinds there are', async () => {
      writeFileSync(image('image.json'), JSON.stringify({ base: { iso: 'debian.iso' } }));
      await expectFailure(
        await build(),
        'images/tiny/image.json does not match the image schema:\n',
        '- base must have exactly one of url (with sha256), path, empty or image (with layer), e.g. {"empty": "4G"} (found: iso)',
      );
    }, 120_000);

    it('a layer folder with both scripts', async () => {
      writeLayer('30_both', 'build-layer', '#!/bin/sh\n');
      writeLayer('30_both', 'modify-disk', '#!/bin/sh\n');
      await expectFailure(
        await build(),
        '  - images/tiny/30_both:\n',
        'images/tiny/30_both holds both build-layer and modify-disk; a layer runs exactly one script. Move one of them into a layer of its own.',
      );
    }, 120_000);

    it('a layer folder with no script (empty: nothing in it for Nx to hash)', async () => {
      mkdirSync(image('30_empty'));
      await expectFailure(
        await build(),
        '  - images/tiny/30_empty:\n',
        'images/tiny/30_empty is a layer folder but holds neither build-layer nor modify-disk. Add one of them (nx g vmlb:layer), or rename the folder so it does not start with a number.',
      );
    }, 120_000);

    it('a script without a #! line', async () => {
      writeLayer('30_x', 'build-layer', 'echo no interpreter\n');
      await expectFailure(
        await build(),
        '  - images/tiny/30_x/build-layer:\n',
        'images/tiny/30_x/build-layer has no #! line, so it cannot be run. Make its first line name its interpreter, e.g. #!/bin/sh (found "echo no interpreter").',
      );
    }, 120_000);

    it('two layers with the same number', async () => {
      writeLayer('20_other', 'build-layer', '#!/bin/sh\n');
      await expectFailure(await build(), 'images/tiny: layers 20_motd and 20_other share the number 20, so their order is ambiguous. Renumber one of them.');
    }, 120_000);

    it.each([
      ['../../../../etc', 'leads out of the workspace; bind sources are paths inside the workspace, relative to the layer folder'],
      ['/etc', 'must be relative to the layer folder, and inside the workspace'],
    ])(
      'a # chroot-bind-mount source outside the workspace: %s',
      async (source, problem) => {
        writeLayer('30_x', 'build-layer', `#!/bin/sh\n# chroot-bind-mount ${source} /host-etc\ntouch /host-etc/escaped\n`);
        await expectFailure(
          await build(),
          `images/tiny/30_x/build-layer:2: bind-mount source '${source}' ${problem} (usage: # chroot-bind-mount <path in the workspace, relative to the layer folder> <absolute path in image>)`,
        );
      },
      120_000,
    );
  });

  describe('found by the layer task before it touches a disk', () => {
    it('a # chroot-bind-mount source that is a symlink out of the workspace: refused, nothing escapes', async () => {
      const outside = mkdtempSync(path.join(tmpdir(), 'vmlb-outside-'));
      try {
        writeLayer('30_x', 'build-layer', '#!/bin/sh\n# chroot-bind-mount data /data\ntouch /data/escaped\n');
        symlinkSync(outside, image('30_x', 'data'));
        const run = await build();
        await expectFailure(
          run,
          `images/tiny/30_x/build-layer: # chroot-bind-mount data /data: bind source 'data' resolves to ${outside}, outside the workspace ${workspace.root}; ` +
            "bind sources must stay inside the workspace, whose files make the layer's cache key. " +
            'Copy what the layer needs into the workspace (beside the layer folders, e.g. ../common) instead of linking to it.',
        );
        expect(run.output).not.toContain(started('30_x'));
        expect(readdirSync(outside)).toEqual([]);
      } finally {
        rmSync(outside, { recursive: true, force: true });
      }
    }, 120_000);

    it('# disk-size smaller than the parent disk', async () => {
      writeLayer('30_x', 'modify-disk', '#!/bin/sh\n# disk-size 32M\ntrue\n');
      await expectFailure(
        await build(),
        "# disk-size 32 MiB for layer 30_x (images/tiny/30_x/modify-disk) is smaller than its parent 20_motd.qcow2 (64 MiB); # disk-size must be at least the parent's size (64 MiB)",
      );
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
        const run = await build({ PATH: bin });
        await expectFailure(
          run,
          'vmlb: cannot build on this host; missing:\n  - qemu-img (Debian/Ubuntu package qemu-utils)\n  - qemu-storage-daemon (Debian/Ubuntu package qemu-system-common)',
          'Install with: apt-get install -y qemu-utils qemu-system-common',
        );
        expect(run.output).not.toContain(started('30_x'));
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
          [
            '--mount',
            '--propagation',
            'private',
            '--',
            'sh',
            '-c',
            'mount --bind "$0" /dev/fuse && exec "$@"',
            notADevice,
            process.execPath,
            NX,
            'build',
            'image-tiny',
            '--output-style=static',
          ],
          { cwd: workspace.root, all: true, reject: false, env: nxEnvironment() },
        );
        await expectFailure(
          { exitCode: result.exitCode ?? -1, output: String(result.all) },
          '/dev/fuse (a character device): load the fuse module (modprobe fuse); in a container, pass the device in (docker run --device /dev/fuse); or pass --nbd /dev/nbd0',
        );
      } finally {
        rmSync(path.dirname(notADevice), { recursive: true, force: true });
      }
    }, 120_000);

    it('not root: `nx build` by a user who forgot sudo, in a workspace of their own, says vmlb must run as root', async () => {
      writeLayer('30_x', 'build-layer', '#!/bin/sh\necho needs a build\n');
      const nobody = '65534';
      const home = mkdtempSync(path.join(tmpdir(), 'vmlb-home-'));
      // Everything in the workspace is the user's (the link to node_modules, not what it points to).
      const chownWorkspace = (owner: string) => execa('chown', ['-R', '--no-dereference', `${owner}:${owner}`, workspace.root, home]);
      await chownWorkspace(nobody);
      let run: NxRun;
      try {
        const result = spawnSync(
          'setpriv',
          [`--reuid=${nobody}`, `--regid=${nobody}`, '--clear-groups', '--', process.execPath, NX, 'build', 'image-tiny', '--output-style=static'],
          { cwd: workspace.root, encoding: 'utf8', env: { ...process.env, ...nxEnvironment(), HOME: home } as NodeJS.ProcessEnv, timeout: 120_000 },
        );
        run = { exitCode: result.status ?? -1, output: `${result.stdout}${result.stderr}` };
      } finally {
        await chownWorkspace('0');
        rmSync(home, { recursive: true, force: true });
      }
      await expectFailure(
        run,
        'nx run tiny-30_x:build',
        'vmlb: cannot build on this host; missing:\n  - root: vmlb attaches disks, mounts filesystems and runs chroots; run it as root (e.g. sudo npx nx ...).',
      );
      expect(run.output).not.toContain(started('30_x'));
    }, 120_000);
  });

  describe('a base disk that cannot be imported (served over HTTP on 127.0.0.1)', () => {
    let server: Server;
    let url: string;
    let downloads: string;
    let served: string;
    /** 1 MiB, a whole number of sectors: a raw disk. */
    const disk = Buffer.alloc(1024 * 1024, 'vmlb');
    const notes = Buffer.from('not a disk\n');

    beforeAll(async () => {
      served = mkdtempSync(path.join(tmpdir(), 'vmlb-served-'));
      writeFileSync(path.join(served, 'disk.raw'), disk);
      writeFileSync(path.join(served, 'notes.txt'), notes);
      server = createServer((request, response) => {
        if (request.url === '/truncated.raw') {
          // Promises the whole disk, sends a quarter of it, then drops the connection.
          response.writeHead(200, { 'content-length': disk.length });
          response.write(disk.subarray(0, disk.length / 4), () => response.destroy());
          return;
        }
        const file = path.join(served, path.basename(request.url ?? '/'));
        if (!existsSync(file)) {
          response.writeHead(404).end('not found');
          return;
        }
        response.writeHead(200, { 'content-length': readFileSync(file).length }).end(readFileSync(file));
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    beforeEach(() => {
      downloads = mkdtempSync(path.join(tmpdir(), 'vmlb-downloads-'));
    });
    afterEach(() => rmSync(downloads, { recursive: true, force: true }));
    afterAll(async () => {
      await new Promise((resolve) => server?.close(resolve));
      if (served) rmSync(served, { recursive: true, force: true });
    });

    const buildFrom = (base: Record<string, string>) => {
      writeFileSync(image('image.json'), JSON.stringify({ base }));
      return build({ VMLB_DOWNLOAD_CACHE: downloads });
    };
    // The base task ran and failed: the base it was to replace is whole, with the manifest that describes it.
    afterEach(() => {
      expect(builtFiles()[BASE_MANIFEST]).toBe(builtBefore[BASE_MANIFEST]);
    });

    it('sha256 mismatch of the download: both digests, the image.json setting, nothing kept', async () => {
      const wrong = 'f'.repeat(64);
      await expectFailure(
        await buildFrom({ url: `${url}/disk.raw`, sha256: wrong }),
        `vmlb: sha256 mismatch for ${url}/disk.raw:\n  expected ${wrong} (base.sha256 in images/tiny/image.json)\n  actual   ${sha256(disk)}\n` +
          'Nothing was kept. Check base.url, or update base.sha256 if the file was meant to change.',
      );
      expect(readdirSync(downloads)).toEqual([]);
    }, 120_000);

    it('a base URL answering 404', async () => {
      await expectFailure(
        await buildFrom({ url: `${url}/gone.raw`, sha256: sha256(disk) }),
        `vmlb: Cannot download ${url}/gone.raw: the server answered 404 Not Found. Check base.url in images/tiny/image.json.`,
      );
      expect(readdirSync(downloads)).toEqual([]);
    }, 120_000);

    it('a download cut short', async () => {
      await expectFailure(
        await buildFrom({ url: `${url}/truncated.raw`, sha256: sha256(disk) }),
        new RegExp(
          `vmlb: Cannot download ${url.replace(/\./g, '\\.')}/truncated\\.raw: the transfer stopped after \\d+ of 1048576 bytes \\(.+\\)\\. Nothing was kept; build again to retry\\.`,
        ),
      );
      expect(readdirSync(downloads)).toEqual([]);
    }, 120_000);

    it('a base file that is not a disk image', async () => {
      await expectFailure(
        await buildFrom({ url: `${url}/notes.txt`, sha256: sha256(notes) }),
        'vmlb: notes.txt is not a disk image: qemu-img sees no image format in it, and as a raw disk its 11 bytes are not a whole number of 512-byte sectors. ' +
          'Point base.url in images/tiny/image.json at a disk image (qcow2, raw, vmdk, vdi, vhdx or vpc; .xz, .gz or .zst compressed or not).',
      );
    }, 120_000);

    describe('a base whose backing file is a file of this host (a canary standing for /etc/shadow)', () => {
      const canaryText = 'CANARY-vmlb-bad-inputs-host-secret';
      let canary: string;
      let backed: Buffer;
      beforeAll(async () => {
        canary = path.join(served, 'canary.raw');
        writeFileSync(canary, Buffer.alloc(1024 * 1024, `${canaryText}\n`));
        await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', canary, '-F', 'raw', path.join(served, 'backed.qcow2'), '1M']);
        backed = readFileSync(path.join(served, 'backed.qcow2'));
      });
      /** No file of the image's dist/ or of the download cache holds a byte pattern of the canary. */
      const canaryNowhere = () => {
        for (const folder of [dist(), downloads]) {
          for (const name of readdirSync(folder, { recursive: true }).map(String)) {
            const file = path.join(folder, name);
            if (spawnSync('test', ['-f', file]).status === 0) expect(readFileSync(file).includes(canaryText)).toBe(false);
          }
        }
      };
      const refusal = (name: string, setting: string) =>
        `vmlb: ${name} is a qcow2 image with a backing file (${JSON.stringify(canary)}): vmlb imports standalone disks only, since opening it would read another file on this host into the base, ` +
        `which the caches then share. Flatten it first, on a machine that has the files it names: qemu-img convert -O qcow2 <in> <out>, and point ${setting} in images/tiny/image.json at the result.`;

      it('by base.path: refused with the flatten command; the canary is nowhere in dist/', async () => {
        writeFileSync(image('backed.qcow2'), backed);
        await expectFailure(await buildFrom({ path: 'backed.qcow2' }), refusal('images/tiny/backed.qcow2', 'base.path'));
        canaryNowhere();
      }, 120_000);

      it('by base.url with its matching sha256: refused the same way; the canary is nowhere in dist/ or the download cache', async () => {
        await expectFailure(await buildFrom({ url: `${url}/backed.qcow2`, sha256: sha256(backed) }), refusal('backed.qcow2', 'base.url'));
        canaryNowhere();
      }, 120_000);
    });

    it('a local base disk that is not there', async () => {
      await expectFailure(
        await buildFrom({ path: 'disks/debian.qcow2' }),
        `vmlb: base.path images/tiny/disks/debian.qcow2 does not exist (resolved to ${image('disks/debian.qcow2')}). Fix base.path in images/tiny/image.json, or put the disk there.`,
      );
    }, 120_000);
  });

  describe('a script that tries to write outside the image through a symlink', () => {
    it('into /mnt (the layer folder), through a symlink it planted: read-only, nothing escapes', async () => {
      writeLayer('30_x', 'build-layer', '#!/bin/sh\nset -e\nln -s /mnt /tmp/to-host\necho escaped > /tmp/to-host/escaped\n');
      await expectFailure(await build(), 'Layer 30_x of image tiny: images/tiny/30_x/build-layer exited with code', /Read-only file system/);
      expect(existsSync(image('30_x', 'escaped'))).toBe(false);
    }, 120_000);

    it('through a symlink in the layer folder to a host folder: inside the chroot it leads into the image, never to the host', async () => {
      const outside = mkdtempSync(path.join(tmpdir(), 'vmlb-outside-'));
      try {
        writeLayer('30_x', 'build-layer', '#!/bin/sh\nset -e\necho escaped > /mnt/out/escaped\n');
        symlinkSync(outside, image('30_x', 'out'));
        // The image has no such folder: the write fails there.
        await expectFailure(
          await build(),
          'Layer 30_x of image tiny: images/tiny/30_x/build-layer exited with code',
          /\/mnt\/out\/escaped: nonexistent directory/,
        );
        expect(readdirSync(outside)).toEqual([]);
      } finally {
        rmSync(outside, { recursive: true, force: true });
      }
    }, 120_000);

    it('through a mount target that an earlier layer made a symlink to a host folder: vmlb mounts inside the image, never on the host', async () => {
      const outside = mkdtempSync(path.join(tmpdir(), 'vmlb-outside-'));
      try {
        writeLayer('30_plant', 'build-layer', `#!/bin/sh\nset -e\nln -s ${outside} /data\n`);
        writeLayer('40_use', 'build-layer', '#!/bin/sh\nset -e\n# chroot-bind-mount files /data/files\nls /data/files\n');
        mkdirSync(image('40_use', 'files'));
        writeFileSync(image('40_use', 'files', 'from-the-layer-folder'), 'a');
        const run = await build();
        // On the host, vmlb created nothing where the symlink would lead outside the image...
        expect(readdirSync(outside)).toEqual([]);
        expect(describeLeftovers(await findLeftovers(workspace.root))).toBe('');
        // ...and the bind mount is there for the script, where the image's own symlink leads.
        if (run.exitCode !== 0) throw new Error(`nx failed:\n${run.output}`);
        expect(run.output).toContain('from-the-layer-folder');
      } finally {
        rmSync(outside, { recursive: true, force: true });
      }
    }, 180_000);
  });

  it('a layer folder renamed between two builds: the next build uses the new name, and reports the old files, which it leaves as they were', async () => {
    renameSync(image('20_motd'), image('20_banner'));
    const oldFiles = Object.keys(builtBefore).filter((name) => name.startsWith('20_motd.'));
    expect(oldFiles).toEqual(['20_motd.digest', '20_motd.manifest.json', '20_motd.qcow2', '20_motd.snapshot.json.gz']);

    const output = await workspace.nxOk(['build', 'image-tiny', '--output-style=static']);

    expect(output).toContain('nx run tiny-20_banner:build');
    expect(output).toContain(
      'vmlb: image tiny: 4 file(s) in dist/images/tiny belong to no layer of the image (a layer folder renamed or removed?) and are not used: ' +
        `${oldFiles.join(', ')} (`,
    );
    expect(output).toContain(`To free the space: rm ${oldFiles.map((name) => `dist/images/tiny/${name}`).join(' ')}`);
    const after = builtFiles();
    for (const name of oldFiles) expect(after[name]).toBe(builtBefore[name]);
    expect(readlinkSync(dist('image.qcow2'))).toBe('20_banner.qcow2');
    const { stdout } = await execa('qemu-img', ['info', '--output=json', dist('20_banner.qcow2')]);
    expect(JSON.parse(stdout)['backing-filename']).toBe('10_hello.qcow2');
    expect(await readFilesFromImage(dist('image.qcow2'), ['/etc/motd'])).toEqual({ '/etc/motd': 'Welcome to tiny, built by vmlb.' });
    expect(describeLeftovers(await findLeftovers(workspace.root))).toBe('');

    // Renamed back: the old name's task comes from the cache, and the new name's files are the unused ones now.
    renameSync(image('20_banner'), image('20_motd'));
    const back = await workspace.nxOk(['build', 'image-tiny', '--output-style=static']);
    expect(cacheHits(back)).toContain('tiny-20_motd:build');
    expect(back).toContain('are not used: 20_banner.digest, 20_banner.manifest.json, 20_banner.qcow2, 20_banner.snapshot.json.gz (');
    expect(readlinkSync(dist('image.qcow2'))).toBe('20_motd.qcow2');
    const { 'image.qcow2': _link, ...layerFiles } = withoutBaseManifest(builtBefore);
    expect(builtFiles()).toMatchObject(layerFiles);
    expect(describeLeftovers(await findLeftovers(workspace.root))).toBe('');
  }, 180_000);
});
