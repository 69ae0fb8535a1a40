import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { Tree } from '@nx/devkit';
import { emptyTree } from '../testing/generator-tree';
import { formatFilesKeepingModes, templateDir } from './generator-utils';

// A formatter that rewrites every changed file, as prettier with
// prettier-plugin-sh does for shell scripts: through tree.write, which
// records no mode.
jest.mock('@nx/devkit', () => ({
  ...jest.requireActual<typeof import('@nx/devkit')>('@nx/devkit'),
  formatFiles: jest.fn(async (tree: Tree) => {
    for (const change of tree.listChanges()) {
      if (change.content) tree.write(change.path, `${change.content.toString().trimEnd()}\n# formatted\n`);
    }
  }),
}));

const PACKAGE_ROOT = path.join(__dirname, '..', '..');

describe('templateDir', () => {
  it.each(['layer', 'image'])('finds the files/ folder of the %s generator', (generator) => {
    expect(templateDir(generator)).toBe(path.join(PACKAGE_ROOT, 'src', 'generators', generator, 'files'));
    expect(existsSync(templateDir(generator))).toBe(true);
  });

  it('names a folder the published package ships', () => {
    const files: string[] = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')).files;
    expect(files).toContain('src/**/files/**');
  });
});

describe('formatFilesKeepingModes', () => {
  it('gives back the modes a formatter drops', async () => {
    const tree = emptyTree();
    tree.write('images/a/00_base/build-layer', '#!/bin/bash\n', { mode: '755' });
    tree.write('images/a/image.json', '{}\n');

    await formatFilesKeepingModes(tree);

    const changes = new Map(tree.listChanges().map((change) => [change.path, change]));
    expect(changes.get('images/a/00_base/build-layer')?.content?.toString()).toBe('#!/bin/bash\n# formatted\n');
    expect(changes.get('images/a/00_base/build-layer')?.options?.mode).toBe('755');
    expect(changes.get('images/a/image.json')?.options?.mode).toBeUndefined();
  });
});
