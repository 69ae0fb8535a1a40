import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { readFilesFromImage } from './support/disk-read';
import { NxWorkspace, REPO_ROOT, cacheHits, tasksRun } from './support/nx-workspace';

/** A workspace app with its own build target: `greeter`, whose output is dist/apps/greeter/greeting.txt. */
function addGreeterApp(workspace: NxWorkspace, greeting: string): void {
  const app = (file: string) => workspace.path('apps/greeter', file);
  mkdirSync(app('src'), { recursive: true });
  writeFileSync(app('src/greeting.txt'), greeting);
  writeFileSync(app('NOTES.md'), 'Notes: an input of the build that never reaches its output.\n');
  writeFileSync(
    app('project.json'),
    JSON.stringify({
      name: 'greeter',
      targets: {
        build: {
          executor: 'nx:run-commands',
          options: { command: 'mkdir -p dist/apps/greeter && cp apps/greeter/src/greeting.txt dist/apps/greeter/' },
          inputs: ['{projectRoot}/**/*'],
          outputs: ['{workspaceRoot}/dist/apps/greeter'],
          cache: true,
        },
      },
    }),
  );
}

/**
 * A real monorepo's loop: an app project built by Nx, a layer of images/tiny
 * that ships its output (`# project-output`), and a second image elsewhere
 * (infra/vm/other) that has nothing to do with the app.
 */
describe('a layer that ships another project’s build output', () => {
  let workspace: NxWorkspace;
  const dist = (file: string) => workspace.path('dist/images/tiny', file);

  beforeAll(() => {
    workspace = new NxWorkspace({ images: ['tiny'] });
    addGreeterApp(workspace, 'hello from the greeter app, version 1\n');
    workspace.script('images/tiny/15_greeter/build-layer', '# project-output greeter:build /run/greeter', 'cp /run/greeter/greeting.txt /etc/greeting');
    cpSync(path.join(REPO_ROOT, 'images/tiny'), workspace.path('infra/vm/other'), { recursive: true });
  });
  afterAll(() => workspace.remove());

  it('1. builds the app first and ships its output, read-only and gone from the image afterwards', async () => {
    const output = await workspace.nxOk(['build', 'image-tiny']);
    expect(tasksRun(output)).toEqual(expect.arrayContaining(['greeter:build', 'tiny-15_greeter:build', 'tiny-20_motd:build']));
    expect(output.indexOf('nx run greeter:build')).toBeLessThan(output.indexOf('nx run tiny-15_greeter:build'));
    // Outside CI and without a terminal, Nx shows a successful dependency's output only at the end, if at all.
    expect(output).not.toContain('vmlb: layer 3/4 15_greeter');
    expect(await readFilesFromImage(dist('15_greeter.qcow2'), ['/etc/greeting'])).toEqual({ '/etc/greeting': 'hello from the greeter app, version 1' });
    // Mounted under /run, a tmpfs of the build: nothing of the mount point is left in the layer.
    const manifest = JSON.parse(readFileSync(dist('15_greeter.manifest.json'), 'utf8'));
    expect(JSON.stringify(manifest.files)).not.toContain('/run/greeter');
  });

  it('2. shows the dependency in the project graph', async () => {
    await workspace.nxOk(['graph', '--file=graph.json']);
    const graph = JSON.parse(readFileSync(workspace.path('graph.json'), 'utf8')).graph;
    expect(graph.dependencies['tiny-15_greeter']).toEqual(expect.arrayContaining([expect.objectContaining({ target: 'greeter' })]));
  });

  it('3. keeps the layer a cache hit when the app rebuilds to the same bytes', async () => {
    writeFileSync(workspace.path('apps/greeter/NOTES.md'), 'Notes, edited: the output stays the same.\n');
    const output = await workspace.nxOk(['build', 'image-tiny']);
    expect(tasksRun(output)).toEqual(['greeter:build', 'image-tiny:build']);
    expect(cacheHits(output)).toEqual(expect.arrayContaining(['tiny-15_greeter:build', 'tiny-20_motd:build']));
  });

  it('4. lists as affected by an app edit the app, the layers that ship it and those above, the image, and nothing of the other image', async () => {
    const affected = await workspace.nxOk(['show', 'projects', '--affected', '--files=apps/greeter/src/greeting.txt', '-t', 'build']);
    expect(affected.trim().split('\n').sort()).toEqual(['greeter', 'image-tiny', 'tiny-15_greeter', 'tiny-20_motd']);
  });

  it('5. rebuilds the layer and those above, and only them, when the app’s output changes', async () => {
    writeFileSync(workspace.path('apps/greeter/src/greeting.txt'), 'hello from the greeter app, version 2\n');
    // In CI, as here, vmlb has Nx stream each layer's output live, prefixed with its task.
    const output = await workspace.nxOk(['build', 'image-tiny'], { env: { CI: 'true' } });
    expect(output).toMatch(/tiny-15_greeter: vmlb: layer 3\/4 15_greeter of image tiny: in no cache, building \(build-layer on 10_hello.qcow2\)/);
    expect(tasksRun(output)).toEqual(['greeter:build', 'image-tiny:build', 'tiny-15_greeter:build', 'tiny-20_motd:build']);
    expect(cacheHits(output)).toEqual(['image-tiny:base', 'tiny-00_disk:build', 'tiny-10_hello:build']);
    expect(await readFilesFromImage(dist('image.qcow2'), ['/etc/greeting'])).toEqual({ '/etc/greeting': 'hello from the greeter app, version 2' });
  });

  it('6. builds the image that lives in infra/vm/other under its short name', async () => {
    const output = await workspace.nxOk(['build', 'image-other']);
    expect(tasksRun(output)).toEqual(['image-other:base', 'image-other:build', 'other-00_disk:build', 'other-10_hello:build', 'other-20_motd:build']);
    expect(await readFilesFromImage(workspace.path('dist/images/other/image.qcow2'), ['/etc/hello'])).toEqual({
      '/etc/hello': 'hello from layer 10_hello of other',
    });
  });

  it.each([
    [
      'a project that does not exist',
      '# project-output greeterr /run/g',
      "# project-output greeterr:build /run/g: there is no project 'greeterr' (did you mean greeter?)",
    ],
    [
      'a target the project lacks',
      '# project-output greeter:bundle /run/g',
      "# project-output greeter:bundle /run/g: project 'greeter' has no target 'bundle' (it has: build). Name the target that builds what the layer ships",
    ],
  ])('7. refuses %s as a project-graph error naming the layer and the fix', async (_case, hint, message) => {
    workspace.script('infra/vm/other/30_broken/build-layer', hint, 'true');
    try {
      const run = await workspace.nx(['show', 'projects']);
      expect(run.exitCode).not.toBe(0);
      expect(run.output).toContain(`infra/vm/other/30_broken/build-layer: ${message}`);
    } finally {
      writeFileSync(workspace.path('infra/vm/other/30_broken/build-layer'), '#!/bin/sh\ntrue\n', { mode: 0o755 });
    }
  });

  it('8. refuses a target without outputs, naming the fix', async () => {
    const project = JSON.parse(readFileSync(workspace.path('apps/greeter/project.json'), 'utf8'));
    project.targets.lint = { executor: 'nx:run-commands', options: { command: 'true' } };
    writeFileSync(workspace.path('apps/greeter/project.json'), JSON.stringify(project));
    workspace.script('infra/vm/other/30_broken/build-layer', '# project-output greeter:lint /run/g', 'true');
    const run = await workspace.nx(['show', 'projects']);
    expect(run.output).toContain('greeter:lint declares no outputs, so there is nothing to ship and nothing to key the layer on. Add "outputs" to that target');
    expect(existsSync(workspace.path('dist/images/other/30_broken.qcow2'))).toBe(false);
  });
});
