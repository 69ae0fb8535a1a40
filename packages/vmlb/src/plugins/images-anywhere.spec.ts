import type { CreateNodesContext } from '@nx/devkit';
import { TempWorkspace } from '../testing/temp-workspace';
import { type NodesResults, pluginUnderTest } from '../testing/plugin-under-test';

const plugin = pluginUnderTest();
type Results = NodesResults;

describe('vmlb plugin: images in any folder', () => {
  let workspace: TempWorkspace;
  let context: CreateNodesContext;
  beforeEach(() => {
    workspace = new TempWorkspace();
    context = { nxJsonConfiguration: {}, workspaceRoot: workspace.root };
  });
  afterEach(() => workspace.remove());
  afterAll(() => plugin.remove());

  /** Writes the image.json texts and layer scripts, then runs createNodes over all of them. */
  const infer = (configs: Record<string, object | string>, scripts: string[] = []) => {
    for (const [file, config] of Object.entries(configs)) workspace.write(file, typeof config === 'string' ? config : JSON.stringify(config));
    for (const file of scripts) workspace.script(file);
    return plugin.infer([...Object.keys(configs), ...scripts], {}, context);
  };
  const projectNames = (results: Results) => results.flatMap(([, result]) => Object.values(result.projects ?? {}).map((project) => project.name)).sort();

  it('infers an image in infra/vm/web with the short project names and a dist folder of its name', async () => {
    const results = await infer({ 'infra/vm/web/image.json': { base: { empty: '1G' } } }, [
      'infra/vm/web/00_disk/modify-disk',
      'infra/vm/web/10_app/build-layer',
    ]);
    expect(projectNames(results)).toEqual(['image-web', 'web-00_disk', 'web-10_app']);
    const layer = results[0][1].projects!['infra/vm/web/10_app'];
    expect(layer.targets!.build.options).toMatchObject({ imageName: 'web', layerDir: 'infra/vm/web/10_app', parent: 'dist/images/web/00_disk.qcow2' });
    expect(results[0][1].projects!['infra/vm/web'].targets!['test-boot'].options).toMatchObject({ cloudInitDir: 'infra/vm/web/test-boot' });
  });

  it("leaves another tool's image.json alone", async () => {
    expect(await infer({ 'apps/site/src/assets/image.json': { width: 640, height: 480 } })).toEqual([]);
  });

  it('reports two images of one name against both files, with the fix', async () => {
    const failure = infer({ 'images/web/image.json': { base: { empty: '1G' } }, 'infra/vm/web/image.json': { base: { empty: '1G' } } });
    await expect(failure).rejects.toMatchObject({
      errors: expect.arrayContaining([
        [
          expect.any(String),
          expect.objectContaining({
            message: expect.stringContaining(
              `Project name 'image-web' is inferred for both images/web and infra/vm/web: two images share a name. Give one of them another name with "name" in its image.json, or rename its folder.`,
            ),
          }),
        ],
      ]),
    });
  });

  it("takes image.json's name over the folder's, which settles such a clash", async () => {
    const results = await infer(
      { 'images/web/image.json': { base: { empty: '1G' } }, 'infra/vm/web/image.json': { name: 'web-edge', base: { empty: '1G' } } },
      ['infra/vm/web/10_app/build-layer'],
    );
    expect(projectNames(results)).toEqual(['image-web', 'image-web-edge', 'web-edge-10_app']);
  });

  it('reports a folder with layers but no image.json, wherever it is, with the generator that fixes it', async () => {
    await expect(infer({}, ['infra/vm/db/10_pg/build-layer'])).rejects.toMatchObject({
      errors: [[expect.any(String), expect.objectContaining({ message: expect.stringContaining('nx g vmlb:image db --directory infra/vm') })]],
    });
  });
});
