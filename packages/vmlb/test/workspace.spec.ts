import { readFileSync, rmSync } from 'node:fs';
import { NxWorkspace } from './support/nx-workspace';

// The real nx CLI on a copy of images/tiny: what users see from the plugin.
describe('vmlb plugin in a real Nx workspace', () => {
  let workspace: NxWorkspace;
  beforeAll(() => {
    workspace = new NxWorkspace({ images: ['tiny'] });
  });
  afterAll(() => workspace.remove());

  it('lists one project per layer and one per image', async () => {
    const output = await workspace.nxOk(['show', 'projects', '--json']);
    expect(JSON.parse(output).sort()).toEqual(['image-tiny', 'tiny-00_disk', 'tiny-10_hello', 'tiny-20_motd']);
  });

  it('draws the layer chain in the project graph', async () => {
    await workspace.nxOk(['graph', '--file=graph.json']);
    const { graph } = JSON.parse(readFileSync(workspace.path('graph.json'), 'utf8'));
    const edges = (project: string) => graph.dependencies[project].map((edge: { target: string; type: string }) => `${edge.type}:${edge.target}`);
    expect(edges('image-tiny')).toEqual(['implicit:tiny-20_motd']);
    expect(edges('tiny-20_motd')).toEqual(['implicit:tiny-10_hello']);
    expect(edges('tiny-10_hello')).toEqual(['implicit:tiny-00_disk']);
    expect(edges('tiny-00_disk')).toEqual([]);
  });

  it('marks a changed layer, the layers above it and the image as affected, not the layers below', async () => {
    const output = await workspace.nxOk(['show', 'projects', '--affected', '--files=images/tiny/10_hello/build-layer', '--json']);
    expect(JSON.parse(output).sort()).toEqual(['image-tiny', 'tiny-10_hello', 'tiny-20_motd']);
  });

  it('chains the build tasks from the base to the image', async () => {
    await workspace.nxOk(['build', 'image-tiny', '--graph=tasks.json']);
    const { tasks } = JSON.parse(readFileSync(workspace.path('tasks.json'), 'utf8'));
    const dependsOn = (task: string) => tasks.dependencies[task].map((dependency: { id: string }) => dependency.id);
    expect(dependsOn('image-tiny:base')).toEqual([]);
    expect(dependsOn('tiny-00_disk:build')).toEqual(['image-tiny:base']);
    expect(dependsOn('tiny-10_hello:build')).toEqual(['tiny-00_disk:build']);
    expect(dependsOn('tiny-20_motd:build')).toEqual(['tiny-10_hello:build']);
    expect(dependsOn('image-tiny:build')).toEqual(['tiny-20_motd:build']);
  });

  it('documents every target of the image project', async () => {
    const project = JSON.parse(await workspace.nxOk(['show', 'project', 'image-tiny', '--json']));
    expect(Object.keys(project.targets).sort()).toEqual(['base', 'build', 'diff', 'flatten', 'layers', 'sbom', 'shell', 'test-boot']);
    for (const target of Object.values<{ metadata: { description: string } }>(project.targets)) {
      expect(target.metadata.description).toMatch(/image tiny/);
    }
  });

  it('creates the next layer with nx g vmlb:layer, and writes nothing with --dry-run', async () => {
    const dryRun = await workspace.nxOk(['g', 'vmlb:layer', 'cleanup', '--image=tiny', '--dry-run', '--no-interactive']);
    expect(dryRun).toMatch(/CREATE images\/tiny\/30_cleanup\/build-layer/);
    expect(() => readFileSync(workspace.path('images/tiny/30_cleanup/build-layer'))).toThrow();

    await workspace.nxOk(['g', 'vmlb:layer', 'cleanup', '--image=tiny', '--no-interactive']);
    const projects = JSON.parse(await workspace.nxOk(['show', 'projects', '--json']));
    expect(projects).toContain('tiny-30_cleanup');
    rmSync(workspace.path('images/tiny/30_cleanup'), { recursive: true });
  });

  it('fails with the file and the fix when a script is not executable', async () => {
    const script = workspace.path('images/tiny/20_motd/build-layer');
    const { chmodSync } = await import('node:fs');
    chmodSync(script, 0o644);
    try {
      const run = await workspace.nx(['show', 'projects']);
      expect(run.exitCode).not.toBe(0);
      expect(run.output).toContain('images/tiny/20_motd/build-layer is not executable. Run: chmod +x images/tiny/20_motd/build-layer');
    } finally {
      chmodSync(script, 0o755);
    }
  });
});
