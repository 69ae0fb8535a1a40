import { type CreateNodesContext, getOutputsForTargetAndConfiguration } from '@nx/devkit';
import type { ExecutorContext } from '@nx/devkit';
import { LAYER_FORMAT } from '../lib/cache-identity/task-key';
import { chainTop } from '../lib/image/image-chain';
import { checkTargetDefaults, targetDefaultsProblem } from '../lib/cache-identity/target-defaults-guard';
import { TempWorkspace } from '../testing/temp-workspace';
import { type NodesResults, pluginUnderTest } from '../testing/plugin-under-test';

const plugin = pluginUnderTest();
const { createNodes } = plugin;

type Results = NodesResults;

describe('vmlb plugin createNodes', () => {
  let workspace: TempWorkspace;
  let context: CreateNodesContext;
  const [glob, createNodesFunction] = createNodes;

  beforeEach(() => {
    workspace = new TempWorkspace();
    context = { nxJsonConfiguration: {}, workspaceRoot: workspace.root };
  });
  afterEach(() => workspace.remove());
  afterAll(() => plugin.remove());

  const run = (files: string[], options = {}) => createNodesFunction(files, options, context) as Promise<Results>;

  it('matches image.json files and layer scripts anywhere', () => {
    expect(glob).toBe('**/{image.json,*/build-layer,*/modify-disk}');
  });

  it('infers the chain of layer projects and the image project', async () => {
    workspace.write('images/demo/image.json', JSON.stringify({ base: { empty: '1G' }, testBoot: { memory: '512M' } }));
    workspace.script('images/demo/00_disk/modify-disk');
    workspace.script('images/demo/10_app/build-layer', '# noshare');
    workspace.script('images/demo/20_clean/build-layer', '# nocache');

    const results = await run([
      'images/demo/00_disk/modify-disk',
      'images/demo/10_app/build-layer',
      'images/demo/20_clean/build-layer',
      'images/demo/image.json',
    ]);

    expect(results).toHaveLength(1);
    const [file, { projects }] = results[0];
    expect(file).toBe('images/demo/image.json');
    expect(Object.keys(projects!)).toEqual(['images/demo/00_disk', 'images/demo/10_app', 'images/demo/20_clean', 'images/demo']);

    const layer = projects!['images/demo/10_app'];
    expect({ ...layer, targets: undefined }).toMatchInlineSnapshot(`
{
  "implicitDependencies": [
    "demo-00_disk",
  ],
  "metadata": {
    "description": "Layer 10_app of image demo (build-layer)",
    "technologies": [
      "vmlb",
    ],
  },
  "name": "demo-10_app",
  "projectType": "library",
  "root": "images/demo/10_app",
  "tags": [
    "vmlb:layer",
    "vmlb:image:demo",
  ],
  "targets": undefined,
}
`);
    expect(layer.targets!.build).toMatchInlineSnapshot(`
{
  "cache": false,
  "dependsOn": [
    {
      "projects": [
        "demo-00_disk",
      ],
      "target": "build",
    },
  ],
  "executor": "vmlb:layer",
  "inputs": [
    "{projectRoot}/**/*",
    {
      "dependentTasksOutputFiles": "**/*.digest",
      "transitive": true,
    },
    {
      "externalDependencies": [],
    },
  ],
  "metadata": {
    "description": "Build layer 10_app of image demo: run build-layer in a chroot of the image into dist/images/demo/10_app.qcow2 (hints: noshare); noshare: kept in this machine's layer store, never in a remote cache",
    "help": {
      "command": "npx nx run demo-10_app:build --help",
      "example": {
        "options": {
          "nbd": "/dev/nbd0",
        },
      },
    },
    "technologies": [
      "vmlb",
    ],
  },
  "options": {
    "imageName": "demo",
    "layer": "10_app",
    "layerDir": "images/demo/10_app",
    "layerFormat": 1,
    "output": "dist/images/demo/10_app.qcow2",
    "parent": "dist/images/demo/00_disk.qcow2",
    "script": "images/demo/10_app/build-layer",
  },
  "outputs": [
    "{workspaceRoot}/dist/images/demo/10_app.qcow2",
    "{workspaceRoot}/dist/images/demo/10_app.digest",
    "{workspaceRoot}/dist/images/demo/10_app.manifest.json",
    "{workspaceRoot}/dist/images/demo/10_app.snapshot.json.gz",
  ],
}
`);

    const first = projects!['images/demo/00_disk'];
    expect(first.implicitDependencies).toEqual([]);
    expect(first.targets!.build.dependsOn).toEqual([{ target: 'base', projects: ['image-demo'] }]);
    expect(first.targets!.build.options.parent).toBe('dist/images/demo/base.qcow2');

    expect(projects!['images/demo/20_clean'].targets!.build.cache).toBe(false);

    const image = projects!['images/demo'];
    expect(image.name).toBe('image-demo');
    expect(image.implicitDependencies).toEqual(['demo-20_clean']);
    expect(Object.keys(image.targets!)).toEqual(['base', 'build', 'flatten', 'test-boot', 'layers', 'diff', 'sbom', 'shell']);
    expect(image.targets!.base).toMatchObject({
      executor: 'vmlb:base',
      cache: true,
      inputs: [{ json: '{projectRoot}/image.json', fields: ['base'] }, { externalDependencies: [] }],
      outputs: [
        '{workspaceRoot}/dist/images/demo/base.qcow2',
        '{workspaceRoot}/dist/images/demo/base.digest',
        '{workspaceRoot}/dist/images/demo/base.manifest.json',
      ],
      options: { imageName: 'demo', base: { empty: '1G' }, output: 'dist/images/demo/base.qcow2', layerFormat: LAYER_FORMAT },
    });
    expect(image.targets!.build).toMatchObject({
      executor: 'vmlb:image',
      dependsOn: [{ target: 'build', projects: ['demo-20_clean'] }],
      options: { imageRoot: 'images/demo', distDir: 'dist/images', output: 'dist/images/demo/image.qcow2' },
    });
    // The export of the whole image and an export up to a layer are different outputs, as Nx reads them.
    const node = { name: 'image-demo', type: 'app' as const, data: { root: 'images/demo', targets: image.targets } };
    const exportOutputs = (overrides: Record<string, unknown>) =>
      getOutputsForTargetAndConfiguration({ project: 'image-demo', target: 'flatten' }, overrides, node);
    expect(exportOutputs({})).toEqual(['dist/images/demo/export/qcow2/demo.*']);
    expect(exportOutputs({ upTo: '10_app', format: 'vmdk' })).toEqual(['dist/images/demo/export/vmdk/10_app']);
    expect(image.targets!['test-boot'].options).toEqual({
      imageName: 'demo',
      imageRoot: 'images/demo',
      distDir: 'dist/images',
      cloudInitDir: 'images/demo/test-boot',
    });
    for (const [name, target] of Object.entries(image.targets!)) {
      expect([name, typeof target.metadata?.description]).toEqual([name, 'string']);
    }
  });

  it('keys layers, the base and exports on what decides their bytes: no npm package, no package version', async () => {
    workspace.write('images/demo/image.json', JSON.stringify({ base: { empty: '1G' } }));
    workspace.script('images/demo/00_a/build-layer');
    const [[, { projects }]] = await run(['images/demo/image.json', 'images/demo/00_a/build-layer']);
    const targets = [projects!['images/demo/00_a'].targets!.build, projects!['images/demo'].targets!.base, projects!['images/demo'].targets!.flatten];
    for (const target of targets) {
      expect(target.inputs).toContainEqual({ externalDependencies: [] });
      expect(target.options.layerFormat).toBe(LAYER_FORMAT);
      expect(JSON.stringify(target)).not.toMatch(/vmlbVersion|0\.1\.0/);
    }
  });

  it("keeps the image project's target options, which Nx hashes into the base import's key, the same when a layer is added or testBoot changes", async () => {
    const files = ['images/demo/image.json', 'images/demo/00_a/build-layer'];
    workspace.write('images/demo/image.json', JSON.stringify({ base: { empty: '1G' } }));
    workspace.script('images/demo/00_a/build-layer');
    const before = (await run(files))[0][1].projects!['images/demo'].targets;
    workspace.write('images/demo/image.json', JSON.stringify({ base: { empty: '1G' }, testBoot: { memory: '2G' } }));
    workspace.script('images/demo/10_b/build-layer');
    const after = (await run([...files, 'images/demo/10_b/build-layer']))[0][1].projects!['images/demo'].targets!;
    expect(Object.fromEntries(Object.entries(after).map(([name, target]) => [name, target.options]))).toEqual(
      Object.fromEntries(Object.entries(before!).map(([name, target]) => [name, name === 'diff' ? after.diff.options : target.options])),
    );
    expect(chainTop(after.build.options, workspace.root)).toBe('dist/images/demo/10_b.qcow2');
  });

  it('rebuilds a # rebuild-every layer once a period, and every layer of an image whose cacheSalt changes', async () => {
    workspace.write('images/demo/image.json', JSON.stringify({ base: { empty: '1G' }, cacheSalt: '2026-12' }));
    workspace.script('images/demo/00_a/build-layer', '# rebuild-every 7d');
    workspace.script('images/demo/10_b/build-layer');
    workspace.write('images/other/image.json', JSON.stringify({ base: { empty: '1G' } }));
    workspace.script('images/other/00_a/build-layer');
    const results = await run([
      'images/demo/image.json',
      'images/demo/00_a/build-layer',
      'images/demo/10_b/build-layer',
      'images/other/image.json',
      'images/other/00_a/build-layer',
    ]);
    const projects = Object.assign({}, ...results.map(([, result]) => result.projects));
    const runtime = (root: string) => projects[root].targets.build.inputs.filter((input: string | object) => typeof input === 'object' && 'runtime' in input);
    expect(runtime('images/demo/00_a')).toEqual([{ runtime: 'echo "rebuild period $(( ${VMLB_NOW:-$(date -u +%s)} / 604800 )) of 604800 s"' }]);
    expect(runtime('images/demo/10_b')).toEqual([]);
    expect(projects['images/demo/00_a'].targets.build.metadata.description).toContain('rebuild-every 7d');
    expect(projects['images/demo/00_a'].targets.build.options.cacheSalt).toBe('2026-12');
    expect(projects['images/demo/10_b'].targets.build.options.cacheSalt).toBe('2026-12');
    expect(projects['images/demo'].targets.base.options.cacheSalt).toBeUndefined();
    expect(projects['images/other/00_a'].targets.build.options.cacheSalt).toBeUndefined();
  });

  describe("nx.json's targetDefaults", () => {
    const build = { dependsOn: ['^build'], inputs: ['production', '^production'], cache: true };
    const shields = { 'vmlb:layer': {}, 'vmlb:base': {}, 'vmlb:image': {}, 'vmlb:flatten': {} };
    /** The problem the plugin warns of for these defaults, or undefined; and whether a layer's task stops on it. */
    const check = async (targetDefaults: object): Promise<{ problem?: string; layerStops: boolean }> => {
      workspace.write('images/demo/image.json', JSON.stringify({ base: { empty: '1G' } }));
      workspace.script('images/demo/00_a/build-layer');
      const results = await run(['images/demo/image.json', 'images/demo/00_a/build-layer']);
      const nxJson = { targetDefaults } as CreateNodesContext['nxJsonConfiguration'];
      const problem = targetDefaultsProblem(nxJson, results);
      const project = results[0][1].projects!['images/demo/00_a'];
      const context = {
        projectName: project.name,
        nxJsonConfiguration: nxJson,
        projectsConfigurations: { version: 2, projects: { [project.name!]: project } },
      };
      let layerStops = false;
      try {
        checkTargetDefaults(context as unknown as ExecutorContext);
      } catch (error) {
        layerStops = (error as Error).message.includes('vmlb:layer');
      }
      return { problem: problem?.message, layerStops };
    };
    const problemWith = async (targetDefaults: object) => (await check(targetDefaults)).problem;

    it('names the build default that would replace what a layer needs, and the fix', async () => {
      const { problem, layerStops } = await check({ build });
      expect(layerStops).toBe(true);
      expect(problem).toContain('nx.json: targetDefaults["build"] sets cache, dependsOn, inputs for the build targets vmlb infers (vmlb:image, vmlb:layer)');
      expect(problem).toContain('add "vmlb:layer": {}, "vmlb:base": {}, "vmlb:image": {}, "vmlb:flatten": {} to targetDefaults (npx nx g vmlb:init adds them)');
    });

    it('takes an empty entry per vmlb executor as the fix, and harmless settings as they are', async () => {
      expect(await check({ build, ...shields })).toEqual({ problem: undefined, layerStops: false });
      expect(await problemWith({ build, ...shields, 'vmlb:layer': { parallelism: false } })).toBeUndefined();
      expect(await problemWith({ test: { cache: true }, lint: { inputs: ['default'] } })).toBeUndefined();
      expect(await problemWith({ ...shields, build: [{ parallelism: false }] })).toBeUndefined();
    });

    it("reads Nx's list form of an entry like the single one", async () => {
      expect(await problemWith({ ...shields, '*': [{ parallelism: false }, { cache: true }] })).toMatch(/targetDefaults\["\*"\] sets cache for the diff/);
    });

    it("names a vmlb executor's own entry that sets what vmlb decides, and a glob that reaches its other targets", async () => {
      const problem = await problemWith({ ...shields, 'vmlb:layer': { inputs: ['default'] }, '*': { cache: true } });
      expect(problem).toContain('targetDefaults["vmlb:layer"] sets inputs for the build targets vmlb infers (vmlb:layer). ');
      expect(problem).toContain('Remove them from that entry');
      expect(problem).toMatch(/targetDefaults\["\*"\] sets cache for the diff, layers, sbom, shell, test-boot targets/);
    });
  });

  it('tracks a local base file by size and time, never by content, and resolves it from the image folder', async () => {
    workspace.write('images/local/image.json', JSON.stringify({ base: { path: '../../disks/my disk.qcow2' } }));
    const [[, { projects }]] = await run(['images/local/image.json']);
    const base = projects!['images/local'].targets!.base;
    expect(base.options.base).toEqual({ path: 'disks/my disk.qcow2' });
    expect(base.inputs).toContainEqual({ runtime: "stat -L -c '%s %Y' 'disks/my disk.qcow2'" });
  });

  it('makes an image without layers build straight from its base', async () => {
    workspace.write('images/bare/image.json', JSON.stringify({ base: { empty: '1G' } }));
    const [[, { projects }]] = await run(['images/bare/image.json']);
    expect(Object.keys(projects!)).toEqual(['images/bare']);
    expect(projects!['images/bare'].targets!.build.dependsOn).toEqual([{ target: 'base' }]);
    expect(chainTop(projects!['images/bare'].targets!.build.options, workspace.root)).toBe('dist/images/bare/base.qcow2');
  });

  it('puts an image built on another image’s layer on that layer: its first layer, or with no layers its build, depends on it', async () => {
    workspace.write('images/prod/image.json', JSON.stringify({ base: { empty: '1G' } }));
    workspace.script('images/prod/20_packages/build-layer');
    workspace.write('images/worker/image.json', JSON.stringify({ base: { image: 'prod', layer: '20_packages' } }));
    workspace.script('images/worker/10_svc/build-layer');
    workspace.write('images/bare/image.json', JSON.stringify({ base: { image: 'prod', layer: '20_packages' } }));
    const results = await run([
      'images/bare/image.json',
      'images/prod/20_packages/build-layer',
      'images/prod/image.json',
      'images/worker/10_svc/build-layer',
      'images/worker/image.json',
    ]);
    const projects = Object.assign({}, ...results.map(([, result]) => result.projects));
    const first = projects['images/worker/10_svc'];
    expect(first.implicitDependencies).toEqual(['prod-20_packages']);
    expect(first.targets.build.dependsOn).toEqual([{ target: 'build', projects: ['prod-20_packages'] }]);
    expect(first.targets.build.options).toMatchObject({ parent: 'dist/images/prod/20_packages.qcow2', output: 'dist/images/worker/10_svc.qcow2' });
    expect(Object.keys(projects['images/worker'].targets)).not.toContain('base');
    const bare = projects['images/bare'];
    expect(bare.implicitDependencies).toEqual(['prod-20_packages']);
    expect(bare.targets.build.dependsOn).toEqual([{ target: 'build', projects: ['prod-20_packages'] }]);
    expect(chainTop(bare.targets.build.options, workspace.root)).toBe('dist/images/prod/20_packages.qcow2');
  });

  it('honours target names and the output folder from the plugin options', async () => {
    workspace.write('images/demo/image.json', JSON.stringify({ base: { empty: '1G' } }));
    workspace.script('images/demo/00_a/build-layer');
    const [[, { projects }]] = await run(['images/demo/image.json', 'images/demo/00_a/build-layer'], {
      buildTargetName: 'image',
      baseTargetName: 'import',
      distDir: 'out/vm/',
    });
    expect(Object.keys(projects!['images/demo/00_a'].targets!)).toEqual(['image']);
    expect(projects!['images/demo/00_a'].targets!.image.dependsOn).toEqual([{ target: 'import', projects: ['image-demo'] }]);
    expect(projects!['images/demo/00_a'].targets!.image.options.output).toBe('out/vm/demo/00_a.qcow2');
  });

  it('rejects a distDir outside the workspace', async () => {
    await expect(run([], { distDir: '../elsewhere' })).rejects.toThrow("vmlb plugin option distDir '../elsewhere' must be a folder inside the workspace");
  });

  it('reports each broken image against its file and still returns the good ones', async () => {
    workspace.write('images/good/image.json', JSON.stringify({ base: { empty: '1G' } }));
    workspace.script('images/nojson/00_a/build-layer');
    workspace.write('images/badjson/image.json', '{');
    const failure = run(['images/good/image.json', 'images/nojson/00_a/build-layer', 'images/badjson/image.json']);
    await expect(failure).rejects.toMatchObject({
      name: 'AggregateCreateNodesError',
      errors: [
        ['images/badjson/image.json', expect.objectContaining({ message: expect.stringMatching(/is not valid JSON/) })],
        ['images/nojson', expect.objectContaining({ message: expect.stringMatching(/has layer folders but no image.json/) })],
      ],
      partialResults: [['images/good/image.json', expect.anything()]],
    });
  });

  it('reports each problem of an image under the file or folder to fix', async () => {
    workspace.write('images/demo/image.json', JSON.stringify({ base: { empty: '1G' } }));
    workspace.write('images/demo/00_plain/build-layer', 'echo no interpreter\n', { executable: true });
    workspace.script('images/demo/10_both/build-layer');
    workspace.script('images/demo/10_both/modify-disk');
    workspace.mkdir('images/demo/20_empty');
    workspace.script('images/demo/30_a/build-layer');
    workspace.script('images/demo/30_b/build-layer');
    const failure = run(['images/demo/image.json', 'images/demo/00_plain/build-layer', 'images/demo/30_a/build-layer', 'images/demo/30_b/build-layer']);
    await expect(failure).rejects.toMatchObject({
      errors: [
        [
          'images/demo/00_plain/build-layer',
          expect.objectContaining({ message: expect.stringMatching(/^images\/demo\/00_plain\/build-layer has no #! line/) }),
        ],
        ['images/demo/10_both', expect.objectContaining({ message: expect.stringMatching(/^images\/demo\/10_both holds both/) })],
        ['images/demo/20_empty', expect.objectContaining({ message: expect.stringMatching(/^images\/demo\/20_empty is a layer folder but holds neither/) })],
        ['images/demo', expect.objectContaining({ message: expect.stringMatching(/^images\/demo: layers 30_a and 30_b share the number 30/) })],
      ],
    });
  });

  it('reports a project name inferred twice instead of merging two projects', async () => {
    workspace.write('images/image/image.json', JSON.stringify({ base: { empty: '1G' } }));
    workspace.script('images/image/10_x/build-layer');
    workspace.write('images/10_x/image.json', JSON.stringify({ base: { empty: '1G' } }));
    await expect(run(['images/image/image.json', 'images/image/10_x/build-layer', 'images/10_x/image.json'])).rejects.toMatchObject({
      errors: [[expect.any(String), expect.objectContaining({ message: expect.stringMatching(/Project name 'image-10_x' is inferred for both/) })]],
    });
  });

  it('notices a script that lost its executable bit even when its content is unchanged', async () => {
    workspace.write('images/demo/image.json', JSON.stringify({ base: { empty: '1G' } }));
    const script = workspace.script('images/demo/00_a/build-layer');
    const files = ['images/demo/image.json', 'images/demo/00_a/build-layer'];
    await expect(run(files)).resolves.toHaveLength(1);
    require('node:fs').chmodSync(script, 0o644);
    await expect(run(files)).rejects.toMatchObject({
      errors: [[expect.any(String), expect.objectContaining({ message: expect.stringMatching(/chmod \+x images\/demo\/00_a\/build-layer/) })]],
    });
  });

  it('notices an empty layer folder added to an image it has already read (an empty folder has no file for Nx to hash)', async () => {
    workspace.write('images/demo/image.json', JSON.stringify({ base: { empty: '1G' } }));
    workspace.script('images/demo/00_a/build-layer');
    const files = ['images/demo/image.json', 'images/demo/00_a/build-layer'];
    await expect(run(files)).resolves.toHaveLength(1);
    workspace.mkdir('images/demo/10_empty');
    await expect(run(files)).rejects.toMatchObject({
      errors: [[expect.any(String), expect.objectContaining({ message: expect.stringMatching(/images\/demo\/10_empty is a layer folder but holds neither/) })]],
    });
  });
});
