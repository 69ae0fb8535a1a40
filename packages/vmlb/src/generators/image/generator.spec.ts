import { execFileSync } from 'node:child_process';
import { type Tree, logger, readNxJson } from '@nx/devkit';
import { emptyTree, modeOf, read } from '../../testing/generator-tree';
import { parseHints } from '../../lib/image/hints';
import { parseImageConfig } from '../../lib/image/image-config';
import { imageGenerator } from './generator';
import type { ImageGeneratorSchema } from './schema';

const SHA256 = 'AB'.repeat(32);
const BASE_URL = 'https://cloud.example.org/debian-12-genericcloud-amd64.qcow2';

describe('vmlb:image', () => {
  let tree: Tree;

  beforeEach(() => {
    tree = emptyTree();
  });

  describe('with --directory', () => {
    beforeEach(async () => {
      await imageGenerator(tree, { name: 'web', directory: 'infra/vm/' });
    });

    it('creates the image folder there, with the schema reference relative to it', () => {
      expect(JSON.parse(read(tree, 'infra/vm/web/image.json')).$schema).toBe('../../../node_modules/vmlb/src/schemas/image.schema.json');
      expect(tree.exists('infra/vm/web/00_disk/modify-disk')).toBe(true);
      expect(tree.exists('images')).toBe(false);
    });

    it('refuses a second image of the same name in another folder', async () => {
      await expect(imageGenerator(tree, { name: 'web' })).rejects.toThrow(
        "An image named 'web' already exists in infra/vm/web; two images with one name would have the same Nx projects. Choose another name.",
      );
    });

    it.each(['../outside', '/abs', '.'])('refuses the directory %j', async (directory) => {
      await expect(imageGenerator(tree, { name: 'x', directory })).rejects.toThrow(`--directory '${directory}' must be a folder inside the workspace`);
    });
  });

  describe('with no base given', () => {
    beforeEach(async () => {
      await imageGenerator(tree, { name: 'scratch' });
    });

    it('starts from a blank 4G disk', () => {
      expect(JSON.parse(read(tree, 'images/scratch/image.json'))).toEqual({
        $schema: '../../node_modules/vmlb/src/schemas/image.schema.json',
        base: { empty: '4G' },
      });
    });

    it('writes image.json as 2-space JSON with a final newline', () => {
      expect(read(tree, 'images/scratch/image.json')).toBe(
        '{\n  "$schema": "../../node_modules/vmlb/src/schemas/image.schema.json",\n  "base": {\n    "empty": "4G"\n  }\n}\n',
      );
    });

    it('writes an image.json the image schema accepts', () => {
      expect(parseImageConfig(read(tree, 'images/scratch/image.json'), 'image.json').base).toEqual({
        kind: 'empty',
        size: '4G',
        bytes: 4 * 1024 ** 3,
      });
    });

    it('adds an executable 00_disk/modify-disk and nothing else as its first layer', () => {
      expect(tree.children('images/scratch').sort()).toEqual(['00_disk', 'image.json']);
      expect(tree.children('images/scratch/00_disk')).toEqual(['modify-disk']);
      expect(modeOf(tree, 'images/scratch/00_disk/modify-disk')).toBe('755');
    });

    describe('the modify-disk script', () => {
      let script: string;
      let commands: string[];

      beforeEach(() => {
        script = read(tree, 'images/scratch/00_disk/modify-disk');
        commands = script.split('\n').filter((line) => line.trim() !== '' && !line.trim().startsWith('#'));
      });

      it('is a strict bash script', () => {
        expect(script.split('\n').slice(0, 2)).toEqual(['#!/bin/bash', 'set -euo pipefail']);
      });

      it('is valid bash', () => {
        expect(() => execFileSync('bash', ['-n'], { input: script })).not.toThrow();
      });

      it('writes one bootable Linux partition in an MBR table to the device it is given', () => {
        expect(script).toContain('device=$3');
        expect(script).toMatch(/sfdisk [^\n]*"\$device" <<'TABLE'\nlabel: dos\ntype=83, bootable\nTABLE\n/);
      });

      it('formats the partition through a loop device at its offset and size, detached on exit', () => {
        expect(script).toContain('sfdisk --json "$device" | python3');
        expect(script).toMatch(
          /losetup --find --show \\\n\s+--offset \$\(\(start_sector \* sector_size\)\) \\\n\s+--sizelimit \$\(\(sector_count \* sector_size\)\) \\\n\s+"\$device"/,
        );
        expect(script).toContain(`trap 'losetup -d "$partition"' EXIT`);
        expect(script).toContain('mkfs.ext4 -q -F -L root -E lazy_itable_init=0,lazy_journal_init=0 "$partition"');
      });

      it('does not rely on partition device nodes', () => {
        expect(commands.join('\n')).not.toMatch(/losetup[^\n]*(-P|--partscan)|\$\{?device\}?p?1/);
      });

      it('activates no hint', () => {
        expect(parseHints(script, 'modify-disk', 'modify-disk')).toEqual({
          nocache: false,
          noshare: false,
          bindMounts: [],
          partitionMounts: [],
          projectOutputs: [],
        });
      });
    });

    it('registers the vmlb plugin and ignores dist', () => {
      expect(readNxJson(tree)?.plugins).toEqual([{ plugin: 'vmlb', options: {} }]);
      expect(read(tree, '.gitignore')).toBe('dist\n');
    });
  });

  it.each<[string | number, string]>([
    // What Nx's command line passes for `--empty 1073741824`.
    [1073741824, '1073741824'],
    ['512M', '512M'],
    ['20GiB', '20GiB'],
    ['20 GiB', '20GiB'],
    ['1.5G', '1.5G'],
    ['1073741824', '1073741824'],
  ])('takes --empty %j as the blank disk size %j', async (given, written) => {
    await imageGenerator(tree, { name: 'blank', empty: given });
    expect(JSON.parse(read(tree, 'images/blank/image.json')).base).toEqual({ empty: written });
    expect(tree.exists('images/blank/00_disk/modify-disk')).toBe(true);
  });

  it("takes a name that Nx's command line turned into a number", async () => {
    await imageGenerator(tree, { name: 2024 });
    expect(tree.exists('images/2024/image.json')).toBe(true);
  });

  describe('with --baseUrl and --sha256', () => {
    beforeEach(async () => {
      await imageGenerator(tree, { name: 'debian-12', baseUrl: BASE_URL, sha256: SHA256 });
    });

    it('downloads the base, its sha256 in lower case', () => {
      const text = read(tree, 'images/debian-12/image.json');
      expect(JSON.parse(text).base).toEqual({ url: BASE_URL, sha256: SHA256.toLowerCase() });
      expect(parseImageConfig(text, 'image.json').base).toEqual({ kind: 'url', url: BASE_URL, sha256: SHA256.toLowerCase() });
    });

    it('adds an executable 00_base/build-layer that prints the OS release', () => {
      expect(tree.children('images/debian-12').sort()).toEqual(['00_base', 'image.json']);
      const script = read(tree, 'images/debian-12/00_base/build-layer');
      expect(modeOf(tree, 'images/debian-12/00_base/build-layer')).toBe('755');
      expect(script.split('\n').slice(0, 2)).toEqual(['#!/bin/bash', 'set -euo pipefail']);
      expect(script).toContain('cat /etc/os-release');
      expect(() => execFileSync('bash', ['-n'], { input: script })).not.toThrow();
      expect(parseHints(script, 'build-layer', 'build-layer')).toEqual({
        nocache: false,
        noshare: false,
        bindMounts: [],
        partitionMounts: [],
        projectOutputs: [],
      });
    });
  });

  it.each(['http://mirror.lan/disk.qcow2.xz', 'file:///srv/disks/base.raw'])('accepts the URL %j', async (url) => {
    await imageGenerator(tree, { name: 'web', baseUrl: url, sha256: SHA256 });
    expect(JSON.parse(read(tree, 'images/web/image.json')).base.url).toBe(url);
  });

  describe('with --basePath', () => {
    let warn: jest.SpyInstance;

    beforeEach(() => {
      warn = jest.spyOn(logger, 'warn').mockImplementation(() => undefined);
    });

    afterEach(() => warn.mockRestore());

    it('starts from the local disk with a 00_base/build-layer', async () => {
      tree.write('disks/golden.qcow2', 'disk');
      await imageGenerator(tree, { name: 'lab', basePath: '../../disks/golden.qcow2' });
      expect(JSON.parse(read(tree, 'images/lab/image.json')).base).toEqual({ path: '../../disks/golden.qcow2' });
      expect(modeOf(tree, 'images/lab/00_base/build-layer')).toBe('755');
      expect(warn).not.toHaveBeenCalled();
    });

    it('warns, without failing, when the disk is not where image.json will look', async () => {
      await imageGenerator(tree, { name: 'lab', basePath: 'disks/golden.qcow2' });
      expect(JSON.parse(read(tree, 'images/lab/image.json')).base).toEqual({ path: 'disks/golden.qcow2' });
      expect(warn).toHaveBeenCalledWith(expect.stringContaining(`'disks/golden.qcow2' does not exist (yet)`));
      expect(warn).toHaveBeenCalledWith(expect.stringContaining('resolved from images/lab/'));
    });
  });

  it('changes only the image folder, nx.json and .gitignore', async () => {
    const before = new Map(tree.listChanges().map((change) => [change.path, change.content?.toString()]));
    await imageGenerator(tree, { name: 'scratch' });
    const changed = tree
      .listChanges()
      .filter((change) => before.get(change.path) !== change.content?.toString())
      .map((change) => change.path)
      .sort();
    expect(changed).toEqual(['.gitignore', 'images/scratch/00_disk/modify-disk', 'images/scratch/image.json', 'nx.json']);
  });

  it('leaves an existing plugin entry and .gitignore alone', async () => {
    tree.write('nx.json', JSON.stringify({ plugins: ['vmlb'] }));
    tree.write('.gitignore', '/dist\n');
    await imageGenerator(tree, { name: 'scratch' });
    expect(readNxJson(tree)?.plugins).toEqual(['vmlb']);
    expect(read(tree, '.gitignore')).toBe('/dist\n');
  });

  describe('refuses', () => {
    const refusals: Array<[string, ImageGeneratorSchema, string]> = [
      [
        'a name with a space',
        { name: 'my image' },
        `Image name 'my image' is not valid: use letters, digits, '.', '_' and '-', starting with a letter or digit, e.g. 'debian-12'.`,
      ],
      ['a name that starts with a dot', { name: '.hidden' }, `Image name '.hidden' is not valid`],
      ['a path as a name', { name: '../escape' }, `Image name '../escape' is not valid`],
      ['an empty name', { name: '' }, `Image name '' is not valid`],
      [
        'two bases',
        { name: 'x', basePath: 'a.qcow2', empty: '4G' },
        'Give the image one base, not --basePath and --empty: --baseUrl <url> --sha256 <64 hex digits> (a download), --basePath <file> (a local disk) or --empty <size> (a blank disk).',
      ],
      [
        'three bases',
        { name: 'x', baseUrl: BASE_URL, sha256: SHA256, basePath: 'a', empty: '4G' },
        'Give the image one base, not --baseUrl and --basePath and --empty',
      ],
      [
        '--sha256 without --baseUrl',
        { name: 'x', sha256: SHA256 },
        '--sha256 checks the file --baseUrl downloads, and no --baseUrl was given. Add --baseUrl <url>, or drop --sha256 for a blank disk.',
      ],
      ['--sha256 with --basePath', { name: 'x', sha256: SHA256, basePath: 'a.qcow2' }, 'or drop --sha256 for --basePath.'],
      [
        '--baseUrl without --sha256',
        { name: 'x', baseUrl: BASE_URL },
        `--baseUrl needs --sha256 <64 hex digits>, the SHA-256 of the downloaded file, so that a changed download is noticed. Take it from the publisher's checksum list, or compute it: curl -fsSL '${BASE_URL}' | sha256sum`,
      ],
      [
        'an ftp URL',
        { name: 'x', baseUrl: 'ftp://example.org/a.qcow2', sha256: SHA256 },
        `--baseUrl 'ftp://example.org/a.qcow2' is not a URL vmlb can download: it must start with http://, https:// or file://.`,
      ],
      ['a bare path as URL', { name: 'x', baseUrl: '/srv/a.qcow2', sha256: SHA256 }, `--baseUrl '/srv/a.qcow2' is not a URL vmlb can download`],
      ['a malformed URL', { name: 'x', baseUrl: 'http://exa mple.org/a', sha256: SHA256 }, `--baseUrl 'http://exa mple.org/a' is not a URL vmlb can download`],
      [
        'a short sha256',
        { name: 'x', baseUrl: BASE_URL, sha256: 'abc123' },
        `--sha256 'abc123' is not a SHA-256: it must be 64 hexadecimal digits (0-9, a-f), and it has 6 characters.`,
      ],
      [
        'a sha256 with a non-hex digit',
        { name: 'x', baseUrl: BASE_URL, sha256: `${'a'.repeat(63)}g` },
        `is not a SHA-256: it must be 64 hexadecimal digits (0-9, a-f), and it has 64 characters.`,
      ],
      ['an empty --basePath', { name: 'x', basePath: ' ' }, '--basePath is empty: give a qcow2 or raw disk file, relative to the image folder or absolute.'],
      [
        'a size that is not one',
        { name: 'x', empty: 'big' },
        `--empty 'big' is not a disk size: use a number with K, M, G or T, e.g. --empty 4G (binary units: 4G is 4 GiB).`,
      ],
      ['a zero size', { name: 'x', empty: '0' }, `--empty '0' is not a disk size`],
      ['an unknown unit', { name: 'x', empty: '4X' }, `--empty '4X' is not a disk size`],
      ['a negative number of bytes', { name: 'x', empty: -1 }, `--empty '-1' is not a disk size`],
    ];

    it.each(refusals)('%s', async (_case, options, message) => {
      await expect(imageGenerator(tree, options)).rejects.toThrow(message);
      expect(tree.exists('images')).toBe(false);
    });

    it('an image folder that already exists, and suggests adding a layer instead', async () => {
      tree.write('images/prod/notes.txt', 'hello');
      await expect(imageGenerator(tree, { name: 'prod' })).rejects.toThrow(
        'images/prod already exists. Choose another name, or add a layer to that image: nx g vmlb:layer <layer name> --image prod',
      );
      expect(tree.children('images/prod')).toEqual(['notes.txt']);
    });

    it('before changing nx.json or .gitignore', async () => {
      await expect(imageGenerator(tree, { name: 'bad name' })).rejects.toThrow();
      expect(readNxJson(tree)?.plugins).toBeUndefined();
      expect(tree.exists('.gitignore')).toBe(false);
    });
  });
});
