import { existsSync, rmSync } from 'node:fs';
import { execa } from 'execa';
import { waitForProcessGroupExit } from './support/host-state';
import { tearDownHost } from './support/host-teardown';
import { NxWorkspace, type RunningNx, cacheHits, startNx } from './support/nx-workspace';
import { type TerminalSession, expectCleanHost as expectCleanHostOf, startOnTerminal } from './support/terminal-session';

const FAILING_SCRIPT = ['echo "half done" > /etc/half-done', 'echo "from the script" > /tmp/scratch.log', 'echo "failing now"', 'exit 7'];
const SHELL_FOLLOWS = 'A shell in its sandbox follows';

/** VMLB_PAUSE_AT=failed: a layer whose script fails is kept as it left it, for a look, before the build fails. */
describe('VMLB_PAUSE_AT=failed', () => {
  let workspace: NxWorkspace;
  let session: TerminalSession | undefined;
  let held: RunningNx | undefined;
  const dist = (...parts: string[]) => workspace.path('dist/images/tiny', ...parts);
  const expectCleanHost = () => expectCleanHostOf(workspace.root);

  beforeAll(async () => {
    workspace = new NxWorkspace({ images: ['tiny'] });
    await workspace.nxOk(['build', 'image-tiny']);
    workspace.script('images/tiny/30_fail/build-layer', ...FAILING_SCRIPT);
  });
  afterEach(async () => {
    await tearDownHost(workspace, { processGroups: [session?.pid, held?.pid] });
    session = held = undefined;
  });
  afterAll(() => workspace.remove());

  it('on a terminal, opens a shell in the failed sandbox (its files and /tmp as the script left them), then fails the build and keeps nothing', async () => {
    // Nx passes a running dependency's output and keys on live in this style (not in the TUI's, nor in --tui=false's default).
    session = startOnTerminal(workspace, ['build', 'image-tiny', '--outputStyle=stream-without-prefixes'], { env: { VMLB_PAUSE_AT: 'failed' } });
    await session.waitForOutput(SHELL_FOLLOWS, 120_000);
    await session.waitForOutput('/mnt # ', 30_000);
    session.type('cat /etc/half-done /tmp/scratch.log; echo "layer $VMLB_LAYER"; exit\n');
    const { exitCode, output } = await session.exited;
    expect(output).toContain('failing now');
    expect(output).toMatch(/half done\nfrom the script\nlayer 30_fail\n/);
    expect(output).toContain('vmlb: Layer 30_fail of image tiny: images/tiny/30_fail/build-layer exited with code 7.');
    expect(exitCode).not.toBe(0);
    // Never a layer, never in a cache: the next build runs the script again.
    expect(existsSync(dist('30_fail.qcow2'))).toBe(false);
    await expectCleanHost();
    const again = await workspace.nx(['build', 'image-tiny']);
    expect(again.exitCode).not.toBe(0);
    expect(cacheHits(again.output)).not.toContain('tiny-30_fail:build');
    expect(again.output).toContain('failing now');
    await expectCleanHost();
  });

  it('without a terminal, holds the failed sandbox and says how to look at it, until the build is interrupted', async () => {
    // Nx shows a running task's output at once only when it streams it.
    held = startNx(workspace, ['build', 'image-tiny', '--outputStyle=stream'], { env: { VMLB_PAUSE_AT: 'failed' } });
    await held.waitForOutput('Interrupt the build', 120_000);
    const nsenter = /nsenter --target (\d+) --mount chroot (\S+) \/bin\/sh/.exec(held.output());
    expect(nsenter).not.toBeNull();
    const [, holder, root] = nsenter!;
    expect(root).toBe(dist('.vmlb/30_fail/root'));
    const look = await execa('nsenter', ['--target', holder, '--mount', 'chroot', root, '/bin/sh', '-c', 'cat /etc/half-done /tmp/scratch.log']);
    expect(look.stdout).toBe('half done\nfrom the script');

    process.kill(-held.pid, 'SIGINT');
    const result = await held.exited;
    expect(await waitForProcessGroupExit(held.pid, 60_000)).toBe(true);
    expect(result.exitCode === 0 && result.signal === undefined).toBe(false);
    expect(existsSync(`/proc/${holder}`)).toBe(false);
    expect(existsSync(dist('30_fail.qcow2'))).toBe(false);
    await expectCleanHost();
  });

  it('holds a failed modify-disk layer attached, its disk readable, until the build is interrupted', async () => {
    rmSync(workspace.path('images/tiny/30_fail'), { recursive: true });
    workspace.script('images/tiny/30_fail/modify-disk', 'echo "failing on $3"', 'exit 4');
    held = startNx(workspace, ['build', 'image-tiny', '--outputStyle=stream'], { env: { VMLB_PAUSE_AT: 'failed' } });
    await held.waitForOutput('Interrupt the build', 120_000);
    const disk = /its whole disk readable at (\S+)\./.exec(held.output());
    expect(disk?.[1]).toBe(dist('.vmlb/30_fail/disk.raw'));
    // The partition table 00_disk wrote, read through the held overlay.
    const table = await execa('sfdisk', ['--dump', disk![1]]);
    expect(table.stdout).toMatch(/type=83/);

    process.kill(-held.pid, 'SIGINT');
    const result = await held.exited;
    expect(await waitForProcessGroupExit(held.pid, 60_000)).toBe(true);
    expect(result.output).toContain('failing on /dev/loop');
    expect(result.exitCode === 0 && result.signal === undefined).toBe(false);
    expect(existsSync(dist('30_fail.qcow2'))).toBe(false);
    await expectCleanHost();
  });
});
