import { type Tree, readJson, readNxJson, updateNxJson } from '@nx/devkit';
import { emptyTree } from '../../testing/generator-tree';
import { initGenerator } from './generator';

describe('vmlb:init', () => {
  let tree: Tree;

  beforeEach(() => {
    tree = emptyTree();
  });

  describe('nx.json', () => {
    it('registers the plugin once, however often it runs', async () => {
      await initGenerator(tree, {});
      await initGenerator(tree, {});
      expect(readNxJson(tree)?.plugins).toEqual([{ plugin: 'vmlb', options: {} }]);
    });

    it('keeps the rest of nx.json', async () => {
      await initGenerator(tree, {});
      expect(readNxJson(tree)).toMatchObject({ affected: { defaultBase: 'main' }, targetDefaults: { build: { cache: true } } });
    });

    it('appends after the plugins already registered', async () => {
      updateNxJson(tree, { ...readNxJson(tree), plugins: ['@nx/js/typescript'] });
      await initGenerator(tree, {});
      expect(readNxJson(tree)?.plugins).toEqual(['@nx/js/typescript', { plugin: 'vmlb', options: {} }]);
    });

    it('keeps an existing string entry as it is', async () => {
      updateNxJson(tree, { ...readNxJson(tree), plugins: ['vmlb'] });
      await initGenerator(tree, {});
      expect(readNxJson(tree)?.plugins).toEqual(['vmlb']);
    });

    it('keeps an existing object entry, options and all', async () => {
      const entry = { plugin: 'vmlb', options: { distDir: 'out/images' }, include: ['images/prod/**'] };
      updateNxJson(tree, { ...readNxJson(tree), plugins: [entry] });
      await initGenerator(tree, {});
      expect(readNxJson(tree)?.plugins).toEqual([entry]);
    });

    it('does not mistake another plugin whose name contains vmlb for it', async () => {
      updateNxJson(tree, { ...readNxJson(tree), plugins: ['@acme/vmlb-extras'] });
      await initGenerator(tree, {});
      expect(readNxJson(tree)?.plugins).toEqual(['@acme/vmlb-extras', { plugin: 'vmlb', options: {} }]);
    });

    it('creates nx.json when the workspace has none', async () => {
      tree.delete('nx.json');
      await initGenerator(tree, {});
      expect(readJson(tree, 'nx.json')).toEqual({
        $schema: './node_modules/nx/schemas/nx-schema.json',
        plugins: [{ plugin: 'vmlb', options: {} }],
        targetDefaults: { 'vmlb:layer': {}, 'vmlb:base': {}, 'vmlb:image': {}, 'vmlb:flatten': {} },
      });
    });

    it("gives each vmlb executor an empty targetDefaults entry, which Nx prefers to the workspace's build defaults", async () => {
      const build = { dependsOn: ['^build'], inputs: ['production', '^production'], cache: true };
      updateNxJson(tree, { ...readNxJson(tree), targetDefaults: { build, 'vmlb:flatten': { parallelism: false } } });
      await initGenerator(tree, {});
      await initGenerator(tree, {});
      expect(readNxJson(tree)?.targetDefaults).toEqual({
        build,
        'vmlb:flatten': { parallelism: false },
        'vmlb:layer': {},
        'vmlb:base': {},
        'vmlb:image': {},
      });
    });
  });

  describe('.gitignore', () => {
    it('creates it with dist when there is none', async () => {
      await initGenerator(tree, {});
      expect(tree.read('.gitignore', 'utf-8')).toBe('dist\n');
    });

    it('appends dist to one that does not ignore it', async () => {
      tree.write('.gitignore', 'node_modules\n.nx/cache\n');
      await initGenerator(tree, {});
      expect(tree.read('.gitignore', 'utf-8')).toBe('node_modules\n.nx/cache\ndist\n');
    });

    it('starts a new line when the file does not end with one', async () => {
      tree.write('.gitignore', 'node_modules');
      await initGenerator(tree, {});
      expect(tree.read('.gitignore', 'utf-8')).toBe('node_modules\ndist\n');
    });

    it.each(['dist', '/dist', 'dist/', '/dist/', '**/dist', '  dist  ', 'dist\r'])('leaves one alone that already has the line %j', async (line) => {
      const content = `node_modules\n${line}\ntmp\n`;
      tree.write('.gitignore', content);
      await initGenerator(tree, {});
      expect(tree.read('.gitignore', 'utf-8')).toBe(content);
    });

    it.each(['# dist', '!dist', 'dist/images', 'distribution'])('does not take %j for a line that ignores dist', async (line) => {
      tree.write('.gitignore', `${line}\n`);
      await initGenerator(tree, {});
      expect(tree.read('.gitignore', 'utf-8')).toBe(`${line}\ndist\n`);
    });
  });

  it('changes nothing the second time', async () => {
    await initGenerator(tree, {});
    const before = tree.listChanges().map((change) => [change.path, change.content?.toString()]);
    await initGenerator(tree, {});
    expect(tree.listChanges().map((change) => [change.path, change.content?.toString()])).toEqual(before);
  });
});
