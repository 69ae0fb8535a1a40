import type { ExecutorContext, ProjectConfiguration } from '@nx/devkit';
import { TempWorkspace } from '../../testing/temp-workspace';
import { discoverImage } from '../image/layer-discovery';
import { buildChainUpTo, chainTaskId } from './chain-task';

describe('building an image up to a layer', () => {
  const workspace = new TempWorkspace();
  workspace.write('images/demo/image.json', JSON.stringify({ base: { empty: '1G' } }));
  workspace.script('images/demo/00_disk/build-layer');
  workspace.script('images/demo/10_hello/build-layer');
  workspace.script('images/demo/20_motd/build-layer');
  afterAll(() => workspace.remove());
  const image = discoverImage(workspace.root, 'images/demo');
  const layer = (folder: string) => ({ kind: 'layer' as const, layer: image.layers.find((candidate) => candidate.folder === folder)! });
  // As the plugin infers them (with a renamed build target, which the task ids follow).
  const projects: Record<string, ProjectConfiguration> = {
    'image-demo': { root: 'images/demo', name: 'image-demo', targets: { import: { executor: 'vmlb:base', options: { imageName: 'demo' } } } },
    ...Object.fromEntries(
      image.layers.map(({ folder, dir }) => [
        `demo-${folder}`,
        { root: dir, name: `demo-${folder}`, targets: { make: { executor: 'vmlb:layer', options: { imageName: 'demo', layer: folder } } } },
      ]),
    ),
    'other-10_hello': { root: 'images/other/10_hello', targets: { make: { executor: 'vmlb:layer', options: { imageName: 'other', layer: '10_hello' } } } },
  };

  it("names the task that builds a layer of this image, or its base import, by the targets' executors", () => {
    expect(chainTaskId(projects, 'demo', layer('10_hello'))).toBe('demo-10_hello:make');
    expect(chainTaskId(projects, 'demo', { kind: 'base' })).toBe('image-demo:import');
    expect(() => chainTaskId({}, 'demo', layer('10_hello'))).toThrow('Image demo: no Nx task builds 10_hello (is the vmlb plugin registered in nx.json?).');
  });

  it('runs nothing when Nx ran the chain before the image task, and says which layers above were run too', async () => {
    const context = (tasks: string[]) =>
      ({
        root: workspace.root,
        targetName: 'build',
        projectsConfigurations: { version: 2, projects },
        taskGraph: { roots: [], tasks: Object.fromEntries(tasks.map((id) => [id, { id }])), dependencies: {}, continuousDependencies: {} },
      }) as unknown as ExecutorContext;
    const location = { imageName: 'demo', imageRoot: 'images/demo', distDir: 'dist/images' };
    const log = jest.fn();
    await buildChainUpTo({ ...location, upTo: 10 }, context(['image-demo:import', 'demo-00_disk:make', 'demo-10_hello:make', 'demo-20_motd:make']), log);
    expect(log).toHaveBeenCalledWith(
      'vmlb: image demo up to 10_hello: Nx also ran 20_motd (built, or restored from a cache), because the build target depends on the whole chain; add --exclude-task-dependencies to build only up to 10_hello.',
    );
    log.mockClear();
    await buildChainUpTo({ ...location, upTo: '20_motd' }, context(['image-demo:import', 'demo-00_disk:make', 'demo-10_hello:make', 'demo-20_motd:make']), log);
    expect(log).not.toHaveBeenCalled();
    await expect(buildChainUpTo({ ...location, upTo: '30' }, context([]), log)).rejects.toThrow("--upTo '30' is not a layer of image demo");
  });
});
