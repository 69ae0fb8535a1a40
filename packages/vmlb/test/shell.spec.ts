import { readdirSync } from 'node:fs';
import { sha256File } from '../src/lib/cache-identity/digest';
import { tearDownHost } from './support/host-teardown';
import { NxWorkspace } from './support/nx-workspace';
import { type TerminalSession, expectCleanHost as expectCleanHostOf, startOnTerminal } from './support/terminal-session';

/** `nx run image-tiny:shell`: a shell, or one command, in a built layer's sandbox, on a throwaway overlay. */
describe('nx run image-tiny:shell', () => {
  let workspace: NxWorkspace;
  let session: TerminalSession | undefined;
  const dist = (...parts: string[]) => workspace.path('dist/images/tiny', ...parts);
  /** The sha256 of every file of the chain: the layers a shell opens must stay byte for byte as they are. */
  const chainBytes = async () =>
    Object.fromEntries(
      await Promise.all(
        readdirSync(dist())
          .filter((file) => file.endsWith('.qcow2'))
          .sort()
          .map(async (file) => [file, await sha256File(dist(file))] as const),
      ),
    );
  const expectCleanHost = () => expectCleanHostOf(workspace.root);

  beforeAll(async () => {
    workspace = new NxWorkspace({ images: ['tiny'] });
    await workspace.nxOk(['build', 'image-tiny']);
  });
  afterEach(async () => {
    await tearDownHost(workspace, { processGroups: [session?.pid] });
    session = undefined;
  });
  afterAll(() => workspace.remove());

  it('runs one command in the last layer and passes its output on; the task fails when the command does, naming its exit code', async () => {
    const before = await chainBytes();
    const output = await workspace.nxOk(['run', 'image-tiny:shell', '--', 'cat', '/etc/hello', '/etc/motd']);
    expect(output).toContain('hello from layer 10_hello of tiny\nWelcome to tiny, built by vmlb.');
    expect(output).toContain('vmlb: running the command in layer 20_motd of image tiny');

    const failed = await workspace.nx(['run', 'image-tiny:shell', '--', 'sh', '-c', 'echo "in $VMLB_LAYER at $(pwd)"; exit 5']);
    expect(failed.exitCode).not.toBe(0);
    expect(failed.output).toContain('in 20_motd at /mnt');
    expect(failed.output).toContain('vmlb: The command in layer 20_motd of image tiny exited with code 5.');
    expect(await chainBytes()).toEqual(before);
    await expectCleanHost();
  });

  it('opens the layer --layer names (folder or number) as its build saw it, and discards what the command writes', async () => {
    const before = await chainBytes();
    // The layer below 20_motd has no /etc/motd; its folder is at /mnt; a write stays in the throwaway overlay.
    const below = await workspace.nx(['run', 'image-tiny:shell', '--', '--layer', '10', 'sh', '-c', 'ls /mnt; echo changed > /etc/hello; cat /etc/motd']);
    expect(below.exitCode).not.toBe(0);
    expect(below.output).toContain('vmlb: running the command in layer 10_hello of image tiny');
    expect(below.output).toMatch(/^build-layer$/m);
    expect(below.output).toContain('exited with code 1');
    const again = await workspace.nxOk(['run', 'image-tiny:shell', '--layer=10_hello', 'cat', '/etc/hello']);
    expect(again).toContain('hello from layer 10_hello of tiny');
    expect(await chainBytes()).toEqual(before);
    await expectCleanHost();
  });

  it('is an interactive shell on a terminal: what is typed runs in the layer, its exit code decides the task, nothing is left', async () => {
    const before = await chainBytes();
    session = startOnTerminal(workspace, ['run', 'image-tiny:shell', '--layer', '10_hello']);
    await session.waitForOutput('vmlb: a shell in layer 10_hello of image tiny', 60_000);
    await session.waitForOutput('/mnt # ', 30_000);
    session.type('echo hi-$((40 + 2)) on $(tty); exit 3\n');
    const { exitCode, output } = await session.exited;
    expect(output).toContain('hi-42 on /dev/pts/0');
    expect(output).toContain('vmlb: The shell in layer 10_hello of image tiny exited with code 3.');
    expect(exitCode).not.toBe(0);
    expect(await chainBytes()).toEqual(before);
    await expectCleanHost();
  });

  it.each([
    [
      ['run', 'image-tiny:shell'],
      'nx run image-tiny:shell opens an interactive shell, which needs a terminal, and standard input is not one. Run a command instead',
    ],
    [
      ['run', 'image-tiny:shell', '--layer=30_app'],
      "--layer '30_app' is not a layer of image tiny (images/tiny); give a layer folder or its number: base, 00_disk, 10_hello, 20_motd.",
    ],
    [
      ['run', 'image-tiny:shell', '--', '--layr', '10', 'true'],
      '--layr is not an option of the shell target (it takes --layer); a command goes after the options.',
    ],
    [
      ['run', 'image-tiny:shell', '--', '--layer=base', 'true'],
      'Image tiny at base has no root filesystem to open a shell in (a blank base, or a layer below the one that makes it); choose a later --layer.',
    ],
  ])('refuses %j with the fix', async (args, message) => {
    const run = await workspace.nx(args);
    expect(run.exitCode).not.toBe(0);
    expect(run.output).toContain(message);
    await expectCleanHost();
  });

  it('names the command that builds a layer that is not built here', async () => {
    workspace.script('images/tiny/30_more/build-layer', 'touch /etc/more');
    try {
      const run = await workspace.nx(['run', 'image-tiny:shell', '--', 'true']);
      expect(run.exitCode).not.toBe(0);
      expect(run.output).toContain(
        'Layer 30_more of image tiny is not built here (dist/images/tiny/30_more.qcow2 is missing). Build it first: nx build tiny-30_more (or nx build image-tiny).',
      );
    } finally {
      await tearDownHost(workspace, { restoreImages: ['tiny'] });
    }
  });
});
