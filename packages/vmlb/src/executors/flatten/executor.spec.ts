import * as path from 'node:path';
import type { ExecutorContext } from '@nx/devkit';
import { TempWorkspace } from '../../testing/temp-workspace';
import { checkChainInKey, normalizeOptions } from './executor';

describe('flatten options', () => {
  const base = { imageName: 'prod', chain: 'dist/images/prod/50_cleanup.qcow2', outputDir: 'dist/images/prod/export' };

  it('writes <outputDir>/<format>/<image>.<ext>, qcow2 by default', () => {
    expect(normalizeOptions(base, '/ws')).toMatchObject({
      chain: '/ws/dist/images/prod/50_cleanup.qcow2',
      output: '/ws/dist/images/prod/export/qcow2/prod.qcow2',
      format: 'qcow2',
      compress: false,
      machine: { cpus: 2, memoryMiB: 1024 },
    });
    expect(normalizeOptions({ ...base, format: 'vpc' }, '/ws').output).toBe(path.join('/ws/dist/images/prod/export/vpc/prod.vhd'));
    expect(normalizeOptions({ ...base, format: 'ova' }, '/ws').output).toBe(path.join('/ws/dist/images/prod/export/ova/prod.ova'));
  });

  it('names the option and the fix when options do not fit together', () => {
    expect(() => normalizeOptions({ ...base, format: 'vmdk', compress: true }, '/ws')).toThrow('--compress applies to qcow2 only (got --format vmdk)');
    expect(() => normalizeOptions({ ...base, vmdkSubformat: 'streamOptimized' }, '/ws')).toThrow(
      '--vmdkSubformat applies to --format vmdk only (got --format qcow2).',
    );
    expect(() => normalizeOptions({ ...base, format: 'iso' as never }, '/ws')).toThrow(
      "--format 'iso' is not one vmlb exports; use one of qcow2, raw, vmdk, vhdx, vdi, vpc, ova.",
    );
    expect(() => normalizeOptions({ ...base, format: 'ova', cpus: 0 }, '/ws')).toThrow('--cpus must be a whole number of 1 or more, got 0.');
  });
});

describe('flatten --upTo', () => {
  const workspace = new TempWorkspace();
  workspace.write('images/demo/image.json', JSON.stringify({ base: { empty: '1G' } }));
  workspace.script('images/demo/10_hello/build-layer');
  workspace.script('images/demo/20_motd/build-layer');
  afterAll(() => workspace.remove());
  const options = { imageName: 'demo', imageRoot: 'images/demo', distDir: 'dist/images', outputDir: 'dist/images/demo/export' };

  it('exports the chain up to that layer into a folder named as --upTo was given, which the plugin declares as its output', () => {
    expect(normalizeOptions({ ...options, upTo: '10_hello' }, workspace.root)).toMatchObject({
      chain: workspace.path('dist/images/demo/10_hello.qcow2'),
      output: workspace.path('dist/images/demo/export/qcow2/10_hello/demo.qcow2'),
    });
    expect(normalizeOptions({ ...options, upTo: 10, format: 'vmdk' }, workspace.root)).toMatchObject({
      chain: workspace.path('dist/images/demo/10_hello.qcow2'),
      output: workspace.path('dist/images/demo/export/vmdk/10/demo.vmdk'),
    });
    expect(normalizeOptions(options, workspace.root).output).toBe(workspace.path('dist/images/demo/export/qcow2/demo.qcow2'));
    expect(() => normalizeOptions({ ...options, upTo: '30' }, workspace.root)).toThrow("--upTo '30' is not a layer of image demo");
  });
});

describe('checkChainInKey', () => {
  const context = (dependencies: Array<{ id: string }>) =>
    ({
      projectName: 'image-demo',
      targetName: 'flatten',
      taskGraph: {
        roots: [],
        tasks: { 'image-demo:flatten': { id: 'image-demo:flatten', target: { project: 'image-demo', target: 'flatten' } } },
        dependencies: { 'image-demo:flatten': dependencies },
        continuousDependencies: {},
      },
    }) as unknown as ExecutorContext;

  it('lets an export run after the chain it is keyed on, and stops one whose dependencies were excluded', () => {
    expect(() => checkChainInKey(context([{ id: 'demo-20_motd:build' }]))).not.toThrow();
    expect(() => checkChainInKey(context([]))).toThrow(
      'nx run image-demo:flatten ran without the tasks it depends on (--exclude-task-dependencies?). An export is cached under the digests of its chain',
    );
  });
});
