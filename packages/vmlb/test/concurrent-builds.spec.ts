import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';
import { chainDigest } from '../src/lib/cache-identity/digest';
import { readFilesFromImage } from './support/disk-read';
import { describeLeftovers, findLeftovers } from './support/host-state';
import { NxWorkspace, cacheHits, startNx } from './support/nx-workspace';

// Builds that run at the same time: two images in one run, two checkouts
// sharing one Nx cache, and two `nx` processes in one checkout. Each must
// succeed (or wait its turn, saying so), and no chain may ever be corrupt:
// every digest matches its file, qemu-img check passes, and the files read
// back hold what the scripts wrote. Real nx, qemu, FUSE, loop devices and
// chroots.

const CHAIN = [
  ['00_disk', 'base'],
  ['10_hello', '00_disk'],
  ['20_motd', '10_hello'],
] as const;

/** Checks a built tiny chain in `imageDir`: digests, qemu-img check, and the files the scripts wrote. */
async function expectSoundChain(imageDir: string): Promise<void> {
  for (const [layer, parent] of CHAIN) {
    const parentDigest = readFileSync(path.join(imageDir, `${parent}.digest`), 'utf8').trim();
    const recorded = readFileSync(path.join(imageDir, `${layer}.digest`), 'utf8').trim();
    expect(`${layer}: ${await chainDigest(parentDigest, path.join(imageDir, `${layer}.qcow2`))}`).toBe(`${layer}: ${recorded}`);
    await expect(execa('qemu-img', ['check', path.join(imageDir, `${layer}.qcow2`)])).resolves.toMatchObject({ exitCode: 0 });
  }
  expect(await readFilesFromImage(path.join(imageDir, 'image.qcow2'), ['/etc/hello', '/etc/motd'])).toEqual({
    '/etc/hello': `hello from layer 10_hello of ${path.basename(imageDir)}`,
    '/etc/motd': 'Welcome to tiny, built by vmlb.',
  });
}

async function expectHostClean(root: string): Promise<void> {
  expect(describeLeftovers(await findLeftovers(root))).toBe('');
}

function expectSuccess(run: { exitCode?: number; output: string }, what: string): void {
  if (run.exitCode !== 0) throw new Error(`${what} exited with ${run.exitCode}:\n${run.output}`);
}

describe('builds at the same time', () => {
  const workspaces: NxWorkspace[] = [];
  let sharedHome: string;

  beforeAll(() => {
    sharedHome = mkdtempSync(path.join(tmpdir(), 'vmlb-home-'));
  });

  afterAll(() => {
    for (const workspace of workspaces) workspace.remove();
    rmSync(sharedHome, { recursive: true, force: true });
  });

  const newWorkspace = (options: ConstructorParameters<typeof NxWorkspace>[0]) => {
    const workspace = new NxWorkspace(options);
    workspaces.push(workspace);
    return workspace;
  };

  it('two images in one run (--parallel=2): both chains are sound', async () => {
    const workspace = newWorkspace({ images: ['tiny'] });
    cpSync(workspace.path('images/tiny'), workspace.path('images/twin'), { recursive: true });

    const output = await workspace.nxOk(['run-many', '-t', 'build', '-p', 'image-tiny', 'image-twin', '--parallel=2']);

    expect(output).toContain('Successfully ran target build for 2 projects');
    await expectSoundChain(workspace.path('dist/images/tiny'));
    await expectSoundChain(workspace.path('dist/images/twin'));
    await expectHostClean(workspace.root);
  }, 300_000);

  it('two checkouts sharing one cache, building the same image at once: both succeed, and the cache they filled is sound', async () => {
    // Two clones of one repository, with no cacheDirectory set: Nx gives them one cache (and one cache
    // database) under $HOME/.nx, here a scratch HOME.
    const env = { HOME: sharedHome };
    const first = newWorkspace({ images: ['tiny'], cacheDirectory: null });
    await first.commitAll();
    const second = await first.clone();
    workspaces.push(second);

    const runs = await Promise.all([first, second].map((workspace) => startNx(workspace, ['build', 'image-tiny', '--output-style=stream'], { env }).exited));

    runs.forEach((run, index) => expectSuccess(run, `checkout ${index + 1}`));
    await expectSoundChain(first.path('dist/images/tiny'));
    await expectSoundChain(second.path('dist/images/tiny'));
    expect(readdirSync(path.join(sharedHome, '.nx'))).not.toEqual([]);

    // A third checkout takes every layer from what the two stored, and gets a sound chain.
    const third = await first.clone();
    workspaces.push(third);
    const output = await third.nxOk(['build', 'image-tiny'], { env });
    expect(cacheHits(output)).toEqual(['image-tiny:base', 'tiny-00_disk:build', 'tiny-10_hello:build', 'tiny-20_motd:build']);
    await expectSoundChain(third.path('dist/images/tiny'));
    for (const workspace of [first, second, third]) await expectHostClean(workspace.root);
  }, 300_000);

  it('two nx processes in one checkout: the second waits its turn, saying so, and neither corrupts the chain', async () => {
    const workspace = newWorkspace({ images: ['tiny'] });
    await workspace.nxOk(['run', 'image-tiny:base']);

    const [one, two] = await Promise.all([0, 1].map(() => startNx(workspace, ['build', 'image-tiny', '--output-style=stream']).exited));

    expectSuccess(one, 'the first nx');
    expectSuccess(two, 'the second nx');
    const both = one.output + two.output;
    expect(both).toMatch(/vmlb: waiting for another build writing to \S+dist\/images\/tiny( \(pid \d+\))? to finish\.\.\./);
    // The one that waited found the layer built under its own task hash, and kept it.
    expect(both).toMatch(/vmlb: layer \d\d_\w+ was built by the other build under the same task hash/);
    await expectSoundChain(workspace.path('dist/images/tiny'));
    expect(existsSync(workspace.path('dist/images/tiny/.vmlb'))).toBe(false);
    await expectHostClean(workspace.root);
  }, 300_000);
});
