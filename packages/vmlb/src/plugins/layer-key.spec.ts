import type { CreateNodesContext, CreateNodesResult, TargetConfiguration } from '@nx/devkit';
import { TempWorkspace } from '../testing/temp-workspace';
import { pluginUnderTest } from '../testing/plugin-under-test';

const plugin = pluginUnderTest();

/** What the plugin puts into a layer target's key from the layer's hints and image.json. */
describe("a layer target's key: bind sources and image.json's settings", () => {
  afterAll(() => plugin.remove());

  /**
   * The projects inferred for images/demo with this image.json, in a
   * workspace of their own: Nx hashes a workspace's files once per
   * process, so the plugin's inference cache would not see a rewrite.
   */
  async function inferred(imageJson: object): Promise<NonNullable<CreateNodesResult['projects']>> {
    const workspace = new TempWorkspace();
    try {
      workspace.write('images/demo/image.json', JSON.stringify(imageJson));
      workspace.script('images/demo/00_disk/modify-disk');
      workspace.script(
        'images/demo/10_app/build-layer',
        '# chroot-bind-mount files /opt/files',
        '# chroot-bind-mount ../common /opt/common',
        '# chroot-bind-mount ../../../libs/app.conf /run/app.conf',
        '# chroot-bind-mount-rw ../cache /var/cache/apt',
      );
      const context: CreateNodesContext = { nxJsonConfiguration: {}, workspaceRoot: workspace.root };
      const files = ['images/demo/image.json', 'images/demo/00_disk/modify-disk', 'images/demo/10_app/build-layer'];
      const [[, { projects }]] = await plugin.infer(files, {}, context);
      return projects!;
    } finally {
      workspace.remove();
    }
  }

  /** The build target of every layer of images/demo, by layer folder. */
  async function layerTargets(imageJson: object): Promise<Record<string, TargetConfiguration>> {
    const projects = await inferred(imageJson);
    return { '00_disk': projects['images/demo/00_disk'].targets!.build, '10_app': projects['images/demo/10_app'].targets!.build };
  }

  it('holds the read-only bind sources outside the layer folder, as a file or a folder; not those inside it, nor read-write ones', async () => {
    const { '10_app': app, '00_disk': disk } = await layerTargets({ base: { empty: '1G' } });
    expect(app.inputs).toEqual([
      '{projectRoot}/**/*',
      { dependentTasksOutputFiles: '**/*.digest', transitive: true },
      { externalDependencies: [] },
      '{workspaceRoot}/images/demo/common',
      '{workspaceRoot}/images/demo/common/**/*',
      '{workspaceRoot}/libs/app.conf',
      '{workspaceRoot}/libs/app.conf/**/*',
    ]);
    expect(disk.inputs).toEqual(['{projectRoot}/**/*', { dependentTasksOutputFiles: '**/*.digest', transitive: true }, { externalDependencies: [] }]);
  });

  it('holds the env variables declared with key: true as env inputs and their defaults as an option; nothing of those with key: false', async () => {
    const targets = await layerTargets({
      base: { empty: '1G' },
      env: { VMLB_DEBIAN_MIRROR: { key: false, default: 'http://deb.debian.org/debian' }, RELEASE: { key: true, default: 'bookworm' }, FLAVOUR: { key: true } },
    });
    for (const target of Object.values(targets)) {
      expect(target.inputs).toEqual(expect.arrayContaining([{ env: 'FLAVOUR' }, { env: 'RELEASE' }]));
      expect(JSON.stringify(target.inputs)).not.toContain('VMLB_DEBIAN_MIRROR');
      expect(target.options).toMatchObject({ keyedEnvDefaults: { RELEASE: 'bookworm' } });
      expect(JSON.stringify(target.options)).not.toContain('VMLB_DEBIAN_MIRROR');
    }
    const undeclared = await layerTargets({ base: { empty: '1G' }, env: { VMLB_DEBIAN_MIRROR: { key: false } } });
    const bare = await layerTargets({ base: { empty: '1G' } });
    expect(bare['10_app'].options).not.toHaveProperty('keyedEnvDefaults');
    expect(undeclared).toEqual(bare);
  });

  it('holds qcow2Compat as an option of every target that writes a qcow2: each layer, the base import, the export, the build; none when unset', async () => {
    const projects = await inferred({ base: { empty: '1G' }, qcow2Compat: '0.10' });
    const image = projects['images/demo'].targets!;
    for (const target of [
      projects['images/demo/00_disk'].targets!.build,
      projects['images/demo/10_app'].targets!.build,
      image.base,
      image.flatten,
      image.build,
    ]) {
      expect(target.options).toMatchObject({ qcow2Compat: '0.10' });
    }
    const unset = await inferred({ base: { empty: '1G' } });
    for (const project of Object.values(unset)) for (const target of Object.values(project.targets!)) expect(target.options).not.toHaveProperty('qcow2Compat');
  });
});
