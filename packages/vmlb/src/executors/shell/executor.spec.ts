import type { ProjectGraph } from '@nx/devkit';
import { TempWorkspace } from '../../testing/temp-workspace';
import { normalizeOptions, splitArgs } from './executor';

describe('shell arguments', () => {
  it('takes leading --layer options, then the command as typed', () => {
    expect(splitArgs([])).toEqual({ command: [] });
    expect(splitArgs(['cat', '/etc/hello'])).toEqual({ command: ['cat', '/etc/hello'] });
    expect(splitArgs(['--layer', '10', 'ls', '-la', '--layer', 'x'])).toEqual({ layer: '10', command: ['ls', '-la', '--layer', 'x'] });
    expect(splitArgs(['--layer=10_hello'])).toEqual({ layer: '10_hello', command: [] });
    expect(splitArgs(['--layer=10', '--', '--weird-command'])).toEqual({ layer: '10', command: ['--weird-command'] });
    expect(() => splitArgs(['--layr', '10', 'true'])).toThrow(
      '--layr is not an option of the shell target (it takes --layer); a command goes after the options.',
    );
  });
});

describe('shell options', () => {
  const workspace = new TempWorkspace();
  workspace.write('images/demo/image.json', JSON.stringify({ base: { empty: '1G' }, rootPartition: 1 }));
  workspace.script('images/demo/00_disk/modify-disk');
  workspace.script('images/demo/10_app/build-layer', '# chroot-bind-mount files /opt/files', '# project-output web /srv/www', '# chroot-mount 2 /boot');
  workspace.write('images/demo/10_app/files/a', 'a');
  afterAll(() => workspace.remove());
  const options = { imageName: 'demo', imageRoot: 'images/demo', distDir: 'dist/images' };
  const terminal = { stdinIsTTY: true, ci: false };
  const graph = {
    nodes: { web: { name: 'web', type: 'app', data: { root: 'apps/web', targets: { build: { outputs: ['{workspaceRoot}/dist/apps/web'] } } } } },
    dependencies: {},
  } as unknown as ProjectGraph;

  it("opens the last layer as its build saw it: its folder at /mnt, its hints' mounts, the image's root partition", () => {
    const plan = normalizeOptions(options, workspace.root, 'image-demo:shell', graph, terminal);
    expect(plan).toMatchObject({
      imageName: 'demo',
      pointName: '10_app',
      qcow2: workspace.path('dist/images/demo/10_app.qcow2'),
      imageDistDir: workspace.path('dist/images/demo'),
      layerDir: workspace.path('images/demo/10_app'),
      bindMounts: [{ source: 'files', target: '/opt/files' }],
      partitionMounts: [{ partition: 2, target: '/boot' }],
      projectOutputs: [],
      rootPartition: 1,
      command: undefined,
      terminal: true,
    });
    // Its output is not built: the shell opens without it, and says how to build it.
    expect(plan.missingOutputs).toEqual([
      expect.stringMatching(
        /# project-output web:build \/srv\/www: web:build did not write its output dist\/apps\/web\..*\(not mounted in the shell; nx run web:build builds it\)$/,
      ),
    ]);
  });

  it('runs a command, quoted for the image shell, in /mnt; a modify-disk layer or the base has no hints, and the image folder at /mnt for the base', () => {
    const plan = normalizeOptions({ ...options, args: ['--layer', '0', 'sh', '-c', "echo 'it''s' $HOME"] }, workspace.root, 'image-demo:shell', graph, {
      stdinIsTTY: false,
      ci: false,
    });
    expect(plan).toMatchObject({ pointName: '00_disk', bindMounts: [], partitionMounts: [], terminal: false });
    expect(plan.command).toBe(`cd /mnt && 'sh' '-c' 'echo '\\''it'\\'''\\''s'\\'' $HOME'; exit $?`);
    expect(normalizeOptions({ ...options, layer: 'base', args: ['true'] }, workspace.root, 't', graph, terminal)).toMatchObject({
      pointName: 'base',
      qcow2: workspace.path('dist/images/demo/base.qcow2'),
      layerDir: workspace.path('images/demo'),
    });
  });

  it('asks for a command when nobody can type, naming the task', () => {
    for (const noKeyboard of [
      { stdinIsTTY: false, ci: false },
      { stdinIsTTY: true, ci: true },
    ]) {
      expect(() => normalizeOptions(options, workspace.root, 'image-demo:shell', graph, noKeyboard)).toThrow(
        'nx run image-demo:shell opens an interactive shell, which needs a terminal',
      );
    }
  });
});
