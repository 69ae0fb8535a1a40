import * as path from 'node:path';
import { TempWorkspace } from '../../testing/temp-workspace';
import { normalizeOptions } from './executor';

describe('diff options', () => {
  let workspace: TempWorkspace;
  let root: string;
  const options = (extra: Record<string, unknown> = {}) => ({ imageName: 'demo', imageRoot: 'images/demo', distDir: 'dist/images', ...extra });

  beforeAll(() => {
    workspace = new TempWorkspace();
    root = workspace.root;
    workspace.write('images/demo/image.json', '{"base":{"empty":"1G"}}');
    for (const layer of ['00_disk', '10_a', '20_b']) workspace.write(`images/demo/${layer}/build-layer`, '#!/bin/sh\n', { executable: true });
  });
  afterAll(() => workspace.remove());

  it('compares the last layer with the one below it by default', () => {
    const plan = normalizeOptions(options(), root);
    expect([plan.from.name, plan.to.name]).toEqual(['10_a', '20_b']);
    expect(plan.from.qcow2).toBe(path.join(root, 'dist/images/demo/10_a.qcow2'));
    expect(plan.to.qcow2).toBe(path.join(root, 'dist/images/demo/20_b.qcow2'));
  });

  it('takes the layer below --to when only --to is given, and base by name', () => {
    expect(normalizeOptions(options({ to: '00_disk' }), root).from.name).toBe('base');
    expect(normalizeOptions(options({ from: 'base', to: '10_a' }), root).from.qcow2).toBe(path.join(root, 'dist/images/demo/base.qcow2'));
  });

  it('names the image and its layers when a layer does not exist', () => {
    expect(() => normalizeOptions(options({ from: '15_x' }), root)).toThrow(
      "--from '15_x' is not a layer of image demo; its layers are: base, 00_disk, 10_a, 20_b.",
    );
  });

  it('refuses the same layer twice, and base with nothing below', () => {
    expect(() => normalizeOptions(options({ from: '10_a', to: '10_a' }), root)).toThrow('--from and --to are both 10_a');
    expect(() => normalizeOptions(options({ to: 'base' }), root)).toThrow('--to base has no layer below it to compare with; give --from as well.');
  });
});
