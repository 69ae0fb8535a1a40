import { execFileSync } from 'node:child_process';
import type { Tree } from '@nx/devkit';
import { emptyTree, flushTree, modeOf, read } from '../../testing/generator-tree';
import { TempWorkspace } from '../../testing/temp-workspace';
import { type ScriptKind, parseHints } from '../../lib/image/hints';
import { discoverImage } from '../../lib/image/layer-discovery';
import { imageGenerator } from '../image/generator';
import { layerGenerator } from './generator';

const NO_HINTS = { nocache: false, noshare: false, bindMounts: [], partitionMounts: [], projectOutputs: [] };

/** An image as a user left it: image.json and layer folders with their scripts. */
function addImage(tree: Tree, image: string, layers: Record<string, ScriptKind> = {}): void {
  tree.write(`images/${image}/image.json`, JSON.stringify({ base: { empty: '4G' } }));
  for (const [folder, kind] of Object.entries(layers)) {
    tree.write(`images/${image}/${folder}/${kind}`, '#!/bin/bash\ntrue\n', { mode: '755' });
  }
}

function layerFolders(tree: Tree, image: string): string[] {
  return tree
    .children(`images/${image}`)
    .filter((child) => child !== 'image.json')
    .sort();
}

describe('vmlb:layer', () => {
  let tree: Tree;

  beforeEach(() => {
    tree = emptyTree();
  });

  describe('a build-layer, the default kind', () => {
    let script: string;

    beforeEach(async () => {
      addImage(tree, 'prod', { '00_base': 'build-layer' });
      await layerGenerator(tree, { name: 'update', image: 'prod' });
      script = read(tree, 'images/prod/10_update/build-layer');
    });

    it('is written executable into the next layer folder, alone', () => {
      expect(tree.children('images/prod/10_update')).toEqual(['build-layer']);
      expect(modeOf(tree, 'images/prod/10_update/build-layer')).toBe('755');
    });

    it('is a strict bash script', () => {
      expect(script.split('\n').slice(0, 2)).toEqual(['#!/bin/bash', 'set -euo pipefail']);
      expect(() => execFileSync('bash', ['-n'], { input: script })).not.toThrow();
    });

    it('explains how it runs', () => {
      expect(script).toContain('Layer 10_update of image prod: a build-layer script.');
      expect(script).toContain('as root inside a chroot of the image');
      expect(script).toMatch(/read-only at \/mnt, and \/mnt is the working directory/);
    });

    it('describes the hints of build-layer scripts, and only those', () => {
      for (const hint of ['nocache', 'noshare', 'chroot-bind-mount', 'chroot-mount']) expect(script).toContain(`"# ${hint}`);
      expect(script).not.toContain('disk-size');
    });

    it('activates none of them', () => {
      expect(parseHints(script, 'build-layer', 'build-layer')).toEqual(NO_HINTS);
    });

    it('ends with a placeholder command', () => {
      expect(script.endsWith('\n\necho "layer update: nothing to do yet"\n')).toBe(true);
    });
  });

  describe('a modify-disk', () => {
    let script: string;

    beforeEach(async () => {
      addImage(tree, 'prod', { '00_base': 'build-layer' });
      await layerGenerator(tree, { name: 'grow', image: 'prod', kind: 'modify-disk' });
      script = read(tree, 'images/prod/10_grow/modify-disk');
    });

    it('is written executable, as the only script of its folder', () => {
      expect(tree.children('images/prod/10_grow')).toEqual(['modify-disk']);
      expect(modeOf(tree, 'images/prod/10_grow/modify-disk')).toBe('755');
      expect(() => execFileSync('bash', ['-n'], { input: script })).not.toThrow();
    });

    it('explains how it runs and what its arguments are', () => {
      expect(script).toContain('on the host, not in a chroot');
      expect(script).toContain('modify-disk <source.qcow2> <target.qcow2> <device>');
      expect(script).toMatch(/\$1 {2}the disk as the layers before/);
      expect(script).toMatch(/\$3 {2}a block device attached read-write to the whole disk of \$2/);
    });

    it('describes the hints of modify-disk scripts, and only those, activating none', () => {
      for (const hint of ['nocache', 'noshare', 'disk-size']) expect(script).toContain(`"# ${hint}`);
      expect(script).not.toMatch(/chroot-(bind-)?mount/);
      expect(parseHints(script, 'modify-disk', 'modify-disk')).toEqual(NO_HINTS);
    });
  });

  describe('numbering', () => {
    it('starts an image without layers at 00', async () => {
      addImage(tree, 'prod');
      await layerGenerator(tree, { name: 'base', image: 'prod' });
      expect(layerFolders(tree, 'prod')).toEqual(['00_base']);
    });

    it('goes 10 past the last layer', async () => {
      addImage(tree, 'prod', { '00_base': 'build-layer', '10_update': 'build-layer', '15_fix': 'modify-disk' });
      await layerGenerator(tree, { name: 'users', image: 'prod' });
      expect(layerFolders(tree, 'prod')).toContain('25_users');
    });

    it('keeps the width the layers are written with', async () => {
      addImage(tree, 'prod', { '000_base': 'build-layer', '010_update': 'build-layer' });
      await layerGenerator(tree, { name: 'users', image: 'prod' });
      expect(layerFolders(tree, 'prod')).toContain('020_users');
    });

    it('grows past 99 without renaming anything', async () => {
      addImage(tree, 'prod', { '00_base': 'build-layer', '95_late': 'build-layer' });
      await layerGenerator(tree, { name: 'later', image: 'prod' });
      expect(layerFolders(tree, 'prod')).toEqual(['00_base', '105_later', '95_late']);
    });

    it('ignores folders and files that are not layers', async () => {
      addImage(tree, 'prod', { '00_base': 'build-layer' });
      tree.write('images/prod/notes/50_draft', 'x');
      tree.write('images/prod/90_readme', 'a file, not a layer folder');
      tree.write('images/prod/7_typo/build-layer', '#!/bin/bash\n');
      await layerGenerator(tree, { name: 'update', image: 'prod' });
      expect(tree.exists('images/prod/10_update/build-layer')).toBe(true);
    });

    it.each<[string | number, string]>([
      ['15', '15_mid'],
      ['5', '05_mid'],
      ['005', '05_mid'],
      [' 40 ', '40_mid'],
      // What Nx's command line passes for `--number 15`.
      [15, '15_mid'],
    ])('takes --number %j as folder %s', async (number, folder) => {
      addImage(tree, 'prod', { '00_base': 'build-layer', '10_update': 'build-layer', '20_users': 'build-layer' });
      await layerGenerator(tree, { name: 'mid', image: 'prod', number });
      expect(layerFolders(tree, 'prod')).toContain(folder);
    });

    it('pads --number to the width the layers are written with', async () => {
      addImage(tree, 'prod', { '000_base': 'build-layer' });
      await layerGenerator(tree, { name: 'mid', image: 'prod', number: '5' });
      expect(layerFolders(tree, 'prod')).toContain('005_mid');
    });
  });

  it("takes names that Nx's command line turned into numbers", async () => {
    addImage(tree, '2024');
    await layerGenerator(tree, { name: 42, image: 2024 });
    expect(layerFolders(tree, '2024')).toEqual(['00_42']);
  });

  it('changes nothing but the new script', async () => {
    addImage(tree, 'prod', { '00_base': 'build-layer' });
    const before = new Map(tree.listChanges().map((change) => [change.path, change.content?.toString()]));
    await layerGenerator(tree, { name: 'update', image: 'prod', kind: 'modify-disk' });
    const changed = tree.listChanges().filter((change) => before.get(change.path) !== change.content?.toString());
    expect(changed.map((change) => [change.path, change.type, change.options?.mode])).toEqual([['images/prod/10_update/modify-disk', 'CREATE', '755']]);
  });

  describe('an image outside images/', () => {
    beforeEach(() => {
      tree.write('infra/vm/web/image.json', JSON.stringify({ base: { empty: '1G' } }));
      tree.write('apps/site/assets/image.json', JSON.stringify({ width: 640 }));
    });

    it('finds it by its name and writes the layer into its folder', async () => {
      await layerGenerator(tree, { name: 'app', image: 'web' });
      expect(tree.exists('infra/vm/web/00_app/build-layer')).toBe(true);
    });

    it('finds it by its folder', async () => {
      await layerGenerator(tree, { name: 'app', image: 'infra/vm/web/' });
      expect(tree.exists('infra/vm/web/00_app/build-layer')).toBe(true);
    });

    it("finds it by image.json's name", async () => {
      tree.write('infra/vm/web/image.json', JSON.stringify({ name: 'web-edge', base: { empty: '1G' } }));
      await layerGenerator(tree, { name: 'app', image: 'web-edge' });
      expect(read(tree, 'infra/vm/web/00_app/build-layer')).toContain('of image web-edge');
    });

    it("does not take another tool's image.json for an image", async () => {
      await expect(layerGenerator(tree, { name: 'app', image: 'assets' })).rejects.toThrow("There is no image 'assets'");
    });
  });

  describe('refuses', () => {
    it('an image that does not exist, listing those that do', async () => {
      addImage(tree, 'prod');
      addImage(tree, 'dev');
      tree.write('images/stray/README.md', 'not an image');
      await expect(layerGenerator(tree, { name: 'update', image: 'prdo' })).rejects.toThrow(
        "There is no image 'prdo': images/prdo/image.json does not exist. Existing images: dev, prod. To create it, run: nx g vmlb:image prdo",
      );
    });

    it('an image when there are none yet', async () => {
      await expect(layerGenerator(tree, { name: 'update', image: 'prod' })).rejects.toThrow(
        "There is no image 'prod': images/prod/image.json does not exist. There are no images yet. To create it, run: nx g vmlb:image prod",
      );
    });

    it('an image folder without image.json', async () => {
      tree.write('images/prod/00_base/build-layer', '#!/bin/bash\n');
      await expect(layerGenerator(tree, { name: 'update', image: 'prod' })).rejects.toThrow(
        'images/prod has no image.json, so it is not an image yet. Create images/prod/image.json, e.g. {"base": {"empty": "4G"}}, then add the layer.',
      );
    });

    it.each(['../prod', '/abs/prod', '.hidden', ''])('the image %j', async (image) => {
      await expect(layerGenerator(tree, { name: 'update', image })).rejects.toThrow(
        `--image '${image}' is not an image: give its name (letters, digits, '.', '_' and '-', starting with a letter or digit) or its folder inside the workspace, e.g. infra/vm/web.`,
      );
    });

    it('a folder that is not an image, with the generator that makes it one', async () => {
      await expect(layerGenerator(tree, { name: 'update', image: 'infra/vm/web' })).rejects.toThrow(
        "There is no image 'infra/vm/web': infra/vm/web/image.json does not exist. There are no images yet. To create it, run: nx g vmlb:image web --directory infra/vm",
      );
    });

    it('a name two images share, naming their folders', async () => {
      addImage(tree, 'web');
      tree.write('infra/vm/web/image.json', JSON.stringify({ base: { empty: '1G' } }));
      await expect(layerGenerator(tree, { name: 'update', image: 'web' })).rejects.toThrow(
        "Several images are named 'web': images/web, infra/vm/web. Name the one that gets the layer by its folder, e.g. --image images/web",
      );
    });

    it.each([
      ['my layer', 'my-layer'],
      ['a/b', 'a-b'],
      ['', 'layer'],
      ['wifi (home)', 'wifi-home'],
    ])('the layer name %j, suggesting %j', async (name, suggestion) => {
      addImage(tree, 'prod');
      await expect(layerGenerator(tree, { name, image: 'prod' })).rejects.toThrow(
        `Layer name '${name}' is not valid: use letters, digits, '.', '_' and '-', e.g. '${suggestion}'.`,
      );
    });

    it('a whole folder name given as the layer name', async () => {
      addImage(tree, 'prod');
      await expect(layerGenerator(tree, { name: '10_update', image: 'prod' })).rejects.toThrow(
        "Layer name '10_update' looks like a whole layer folder. Give the name and the number apart: nx g vmlb:layer update --image prod --number 10",
      );
    });

    it('a layer folder that already exists', async () => {
      addImage(tree, 'prod', { '00_base': 'build-layer', '10_update': 'build-layer' });
      await expect(layerGenerator(tree, { name: 'update', image: 'prod', number: '10' })).rejects.toThrow(
        'images/prod/10_update already exists. Choose another name, or another number with --number.',
      );
    });

    it('a number another layer has, naming that layer', async () => {
      addImage(tree, 'prod', { '00_base': 'build-layer', '10_update': 'build-layer' });
      await expect(layerGenerator(tree, { name: 'users', image: 'prod', number: '10' })).rejects.toThrow(
        'Layer number 10 is already used by images/prod/10_update; two layers with one number have no order. ' +
          'Choose a free number with --number, or leave --number out to add the layer after the last one (20).',
      );
    });

    it('a number another layer has written with another width', async () => {
      addImage(tree, 'prod', { '000_base': 'build-layer' });
      await expect(layerGenerator(tree, { name: 'users', image: 'prod', number: '00' })).rejects.toThrow(
        'Layer number 0 is already used by images/prod/000_base',
      );
    });

    it.each<string | number>(['ten', '-5', '1.5', '1e3', '', -5, 1.5])('the number %j', async (number) => {
      addImage(tree, 'prod');
      await expect(layerGenerator(tree, { name: 'users', image: 'prod', number })).rejects.toThrow(
        `--number '${number}' is not a layer number: use digits only, e.g. --number 15.`,
      );
    });

    it('an unknown kind', async () => {
      addImage(tree, 'prod');
      await expect(layerGenerator(tree, { name: 'users', image: 'prod', kind: 'run-script' as ScriptKind })).rejects.toThrow(
        "--kind 'run-script' is not a layer script kind: use build-layer or modify-disk.",
      );
    });

    it('without writing anything', async () => {
      addImage(tree, 'prod', { '00_base': 'build-layer' });
      const before = tree.listChanges().length;
      await expect(layerGenerator(tree, { name: 'bad name', image: 'prod' })).rejects.toThrow();
      expect(tree.listChanges()).toHaveLength(before);
    });
  });

  describe('together with vmlb:image, on disk', () => {
    let workspace: TempWorkspace;

    beforeEach(() => {
      workspace = new TempWorkspace();
    });

    afterEach(() => workspace.remove());

    it.each([
      [{ name: 'scratch' }, ['00_disk', '10_system', '20_update']],
      [{ name: 'cloud', baseUrl: 'https://example.org/a.qcow2', sha256: 'f'.repeat(64) }, ['00_base', '10_system', '20_update']],
    ])('produces an image that layer discovery accepts (%j)', async (imageOptions, folders) => {
      await imageGenerator(tree, imageOptions);
      await layerGenerator(tree, { name: 'system', image: imageOptions.name, kind: 'modify-disk' });
      await layerGenerator(tree, { name: 'update', image: imageOptions.name });
      flushTree(tree, workspace);

      const image = discoverImage(workspace.root, `images/${imageOptions.name}`);
      expect(image.layers.map((layer) => layer.folder)).toEqual(folders);
      expect(image.layers.map((layer) => layer.hints)).toEqual(folders.map(() => NO_HINTS));
      expect(image.warnings).toEqual([]);
    });
  });
});
