import { symlinkSync } from 'node:fs';
import * as path from 'node:path';
import { type Tree, logger } from '@nx/devkit';
import { emptyTree, modeOf, read } from '../../testing/generator-tree';
import { TempWorkspace } from '../../testing/temp-workspace';
import { parseImageConfig } from '../../lib/image/image-config';
import { imageGenerator } from '../image/generator';
import { importSeedGenerator } from './generator';

const FIXTURE = path.join(__dirname, '../../../test/fixtures/vm-layer-builder');
const SHA256 = 'ab'.repeat(32);

describe('vmlb:import-seed', () => {
  let tree: Tree;
  let printed: () => string;

  beforeEach(() => {
    tree = emptyTree();
    const info = jest.spyOn(logger, 'info').mockImplementation(() => undefined);
    jest.spyOn(logger, 'warn').mockImplementation(() => undefined);
    printed = () => info.mock.calls.map((call) => String(call[0])).join('\n');
  });
  afterEach(() => jest.restoreAllMocks());

  describe('the example checkout', () => {
    beforeEach(async () => {
      await importSeedGenerator(tree, { checkout: FIXTURE, image: 'seed', sha256: SHA256.toUpperCase() });
    });

    it("takes the base from SConstruct's download, checked by the SHA-256 given", () => {
      const config = read(tree, 'images/seed/image.json');
      expect(JSON.parse(config)).toEqual({
        $schema: '../../node_modules/vmlb/src/schemas/image.schema.json',
        base: { url: 'http://images.example.invalid/busybox/busybox-64M.qcow2.xz', sha256: SHA256 },
        qcow2Compat: '0.10',
        testBoot: { memory: '512M' },
      });
      expect(() => parseImageConfig(config, 'image.json')).not.toThrow();
      expect(printed()).toContain(
        "SConstruct's download, checked by the --sha256 given (SConstruct's MD5 9b2c4e0d1e6f3a5b7c8d9e0f1a2b3c4d is of the decompressed file",
      );
    });

    it('writes the layer folders with their files and modes, and the seeds under the names test-boot serves', () => {
      const written = tree
        .listChanges()
        .filter((change) => change.path.startsWith('images/'))
        .map((change) => [change.path, modeOf(tree, change.path)]);
      expect(written.sort()).toEqual([
        ['images/seed/05_resize/modify-disk', 0o755],
        ['images/seed/10_update/build-layer', 0o755],
        ['images/seed/20_another/build-layer', 0o755],
        ['images/seed/20_another/dir/file', 0o644],
        ['images/seed/image.json', undefined],
        ['images/seed/test-boot/meta-data', undefined],
        ['images/seed/test-boot/user-data', undefined],
      ]);
      expect(read(tree, 'images/seed/test-boot/user-data')).toBe('#cloud-config\npassword: busybox\nchpasswd: { expire: False }\nssh_pwauth: True\n');
    });

    it('prints the report: what changed, what was not converted with the fix, and what was not imported', () => {
      const report = printed();
      expect(report).toMatch(/^vmlb:import-seed: \S+vm-layer-builder → images\/seed\/ \(3 layers\)\n\nChanged \(12\):\n {2}SConstruct:10\n/);
      expect(report).toMatch(/\n {2}SConstruct:31\n {4}- [^\n]*-o compat=0\.10[^\n]*\n {4}\+ "qcow2Compat": "0\.10" in image\.json\n/);
      expect(report).toContain("\nNot converted: each is marked '# vmlb-import:' in the imported script, or is outside the scripts (0):\n  (none)\n");
      expect(report).toContain('\nNot imported, or different in vmlb (1):\n  test-boot/user-data.yaml\n');
      expect(report).toContain(
        "    `nx run image-seed:test-boot --check --ssh <command>` logs in as vmlb with a key made for the boot: to use it, add a user 'vmlb'",
      );
      expect(report).toContain('\nNext: nx build image-seed');
    });

    it('registers the vmlb plugin', () => {
      expect(JSON.parse(read(tree, 'nx.json')).plugins).toEqual([{ plugin: 'vmlb', options: {} }]);
    });
  });

  describe('the base', () => {
    it('refuses to guess the SHA-256 of an MD5-checked download, printing the command that computes it, and writes nothing', async () => {
      await expect(importSeedGenerator(tree, { checkout: FIXTURE, image: 'seed' })).rejects.toThrow(
        `${FIXTURE}/SConstruct:10 downloads the base http://images.example.invalid/busybox/busybox-64M.qcow2.xz and checks the MD5 of the decompressed file (9b2c4e0d1e6f3a5b7c8d9e0f1a2b3c4d); ` +
          `vmlb checks a download by the SHA-256 of the file as downloaded, which SConstruct does not name, and the import does not guess it. Compute it (the last command prints the MD5 to compare with SConstruct's):\n` +
          `  curl -fsSL 'http://images.example.invalid/busybox/busybox-64M.qcow2.xz' -o /tmp/busybox-64M.qcow2.xz && sha256sum /tmp/busybox-64M.qcow2.xz && xz -dc /tmp/busybox-64M.qcow2.xz | md5sum\n` +
          `then run the import again with --sha256 <the SHA-256 it printed>. Or use a disk you have: --base-path <file>.`,
      );
      expect(tree.exists('images')).toBe(false);
    });

    it('asks for the base when SConstruct names none it can read', async () => {
      const checkout = new TempWorkspace();
      try {
        checkout.createFiles({ SConstruct: "env = Environment()\nenv.Command('build/base.qcow2', [], 'make-base $TARGET')\n" });
        checkout.script('10_a/build-layer', 'true');
        await expect(importSeedGenerator(tree, { checkout: checkout.root, image: 'x' })).rejects.toThrow(
          `${checkout.root}/SConstruct names no base disk the import can read (neither download_base_image()'s base_name and URL nor BASE_IMAGE). ` +
            'Give it: --base-url <url> --sha256 <64 hex digits> for a download, or --base-path <file> for a disk on this machine.',
        );
      } finally {
        checkout.remove();
      }
    });

    it('takes a disk of its own with --base-path, and a download of its own with --base-url and --sha256', async () => {
      await importSeedGenerator(tree, { checkout: FIXTURE, image: 'a', basePath: '/srv/disks/centos.qcow2' });
      await importSeedGenerator(tree, { checkout: FIXTURE, image: 'b', baseUrl: 'https://example.org/d.qcow2', sha256: SHA256 });
      expect(JSON.parse(read(tree, 'images/a/image.json')).base).toEqual({ path: '/srv/disks/centos.qcow2' });
      expect(JSON.parse(read(tree, 'images/b/image.json')).base).toEqual({ url: 'https://example.org/d.qcow2', sha256: SHA256 });
    });

    it('checks those options as vmlb:image does', async () => {
      await expect(importSeedGenerator(tree, { checkout: FIXTURE, image: 'a', baseUrl: 'https://example.org/d.qcow2' })).rejects.toThrow(
        '--baseUrl needs --sha256',
      );
      await expect(importSeedGenerator(tree, { checkout: FIXTURE, image: 'a', sha256: 'abc' })).rejects.toThrow("--sha256 'abc' is not a SHA-256");
    });

    it("names the disk an early SConstruct's BASE_IMAGE put into the checkout", async () => {
      const checkout = new TempWorkspace();
      try {
        checkout.createFiles({ SConstruct: "BASE_IMAGE = 'CentOS-6.qcow2'\n", 'CentOS-6.qcow2': '' });
        checkout.script('10_a/build-layer', 'true');
        await expect(importSeedGenerator(tree, { checkout: checkout.root, image: 'old' })).rejects.toThrow(
          `${checkout.root}/SConstruct:1 names the base disk CentOS-6.qcow2, a file put into the checkout by hand, with no URL or checksum. ` +
            `Use it where it is (vmlb reads it, never changes it): --base-path ${checkout.root}/CentOS-6.qcow2; or name its download: --base-url <url> --sha256 <64 hex digits>.`,
        );
        await expect(importSeedGenerator(tree, { checkout: checkout.root, image: 'old', sha256: SHA256 })).rejects.toThrow(
          "--sha256 checks the file SConstruct's download_base_image() downloads",
        );
      } finally {
        checkout.remove();
      }
    });
  });

  describe('where the image goes', () => {
    it('honours --directory', async () => {
      await importSeedGenerator(tree, { checkout: FIXTURE, image: 'web', directory: 'infra/vm', sha256: SHA256 });
      expect(tree.exists('infra/vm/web/05_resize/modify-disk')).toBe(true);
      expect(JSON.parse(read(tree, 'infra/vm/web/image.json')).$schema).toBe('../../../node_modules/vmlb/src/schemas/image.schema.json');
    });

    it('refuses a name an image has, as vmlb:image does', async () => {
      await imageGenerator(tree, { name: 'seed', directory: 'infra' });
      await expect(importSeedGenerator(tree, { checkout: FIXTURE, image: 'seed', sha256: SHA256 })).rejects.toThrow(
        "An image named 'seed' already exists in infra/seed",
      );
    });
  });

  describe('a folder that is not a checkout', () => {
    it.each([
      ['/nonexistent/vm-layer-builder', 'is not a folder. Give the folder of a vm-layer-builder checkout'],
      [path.join(FIXTURE, '20_another'), 'has no SConstruct, so it is not a vm-layer-builder checkout'],
    ])('refuses %s', async (checkout, message) => {
      await expect(importSeedGenerator(tree, { checkout, image: 'x', sha256: SHA256 })).rejects.toThrow(message);
    });

    it('refuses a checkout without layers', async () => {
      const checkout = new TempWorkspace();
      try {
        checkout.createFiles({ SConstruct: '', 'bin/test-boot': '' });
        await expect(importSeedGenerator(tree, { checkout: checkout.root, image: 'x', sha256: SHA256 })).rejects.toThrow(
          'has no layer folders: folders named NN_name',
        );
      } finally {
        checkout.remove();
      }
    });
  });

  describe('what vmlb takes otherwise', () => {
    let checkout: TempWorkspace;
    beforeEach(async () => {
      checkout = new TempWorkspace();
      checkout.createFiles({
        SConstruct: "base_name = 'b.qcow2'\nurl = 'http://example.org/{0}'\n",
        '10_both/modify-disk': '#!/bin/sh\n',
        '10_both/notes.txt': 'x',
        '10_late/build-layer': '#!/bin/sh\ntrue\n',
        '100_first/build-layer': '#!/bin/sh\ntrue\n',
        '20_a layer/build-layer': '#!/bin/sh\n# chroot-bind-mount ../shared /opt/shared\ntrue\n',
        '30_empty/README': 'no script',
        'shared/config': 'shared config',
        'files/x': 'not a layer',
        'site_scons/s3_cache.py': '',
        'test-boot/cloud-init.img': '',
        'test-boot/user-data.yaml': '#cloud-config\n',
      });
      checkout.script('10_both/build-layer', 'true');
      symlinkSync('notes.txt', path.join(checkout.root, '10_late/link'));
      await importSeedGenerator(tree, { checkout: checkout.root, image: 'x', basePath: 'disk.qcow2' });
    });
    afterEach(() => checkout.remove());

    it("renumbers layers into the original's order (by name), one per number, and renames what vmlb's names do not allow", () => {
      const layers = tree.children('images/x').filter((name) => /^[0-9]/.test(name));
      // By name, 100_first comes before 10_both: '0' sorts before '_'.
      expect(layers).toEqual(['100_first', '101_both', '102_late', '103_a-layer']);
      expect(printed()).toContain(
        '  10_late\n    + 102_late/\n    renamed from 10_late: the original ran its layers in the order of their names, and vmlb runs them by number, one layer per number: 102 keeps this layer after the one before it.',
      );
      expect(printed()).toContain("renamed from 20_a layer: vmlb's layer names hold only letters, digits, '.', '_' and '-'.");
    });

    it('keeps the modify-disk the original ignored beside build-layer, not executable, under another name', () => {
      expect(tree.children('images/x/101_both').sort()).toEqual(['build-layer', 'modify-disk.unused', 'notes.txt']);
      expect(modeOf(tree, 'images/x/101_both/modify-disk.unused')).toBe(0o644);
    });

    it("copies a bind mount's source from beside the layer folder into it", () => {
      expect(read(tree, 'images/x/103_a-layer/shared/config')).toBe('shared config');
      expect(read(tree, 'images/x/103_a-layer/build-layer')).toBe('#!/bin/sh\n# chroot-bind-mount shared /opt/shared\ntrue\n');
    });

    it('reports what it did not import: a symlink, a folder without a script, other folders, the S3 cache, the cloud-init disk', () => {
      const report = printed();
      for (const line of [
        '  10_late/link\n    not imported: a symlink, which a generator cannot write. Copy the file it points to in its place if the script needs it.',
        '  30_empty/\n    not imported: it has no build-layer or modify-disk',
        '  files/\n    not imported: not a layer folder.',
        '  shared/\n    not imported: not a layer folder.',
        '  site_scons/s3_cache.py\n    not imported: vmlb shares layers through an Nx remote cache',
        '  test-boot/cloud-init.img\n    not imported: vmlb serves test-boot/user-data and meta-data to the guest itself',
      ]) {
        expect(report).toContain(line);
      }
      expect(tree.exists('images/x/30_empty')).toBe(false);
      expect(tree.exists('images/x/test-boot/cloud-init.img')).toBe(false);
    });
  });
});
