import { readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { execa } from 'execa';
import { chainDigest, ROOT_DIGEST } from '../src/lib/cache-identity/digest';
import { CiAgent, SharedCaches } from './support/ci-agents';
import { readFilesFromImage } from './support/disk-read';
import { tearDownHost } from './support/host-teardown';
import { NxWorkspace, remoteCacheHits, tasksRun } from './support/nx-workspace';

const CHAIN = ['base', '00_disk', '10_hello', '20_motd'];
const BOOT_CHAIN = ['base', '00_disk', '10_kernel', '20_init'];
const TINY_FILES = { '/etc/hello': 'hello from layer 10_hello of tiny', '/etc/motd': 'Welcome to tiny, built by vmlb.' };

/** Every digest of an agent's chain is what its file's bytes give on top of its parent's: the chain is whole, wherever its parts came from. */
async function expectSoundChain(agent: CiAgent, image: string, names: string[]): Promise<void> {
  let parent = ROOT_DIGEST;
  for (const name of names) {
    const recorded = agent.digests(image, [name])[name];
    expect(`${name}: ${await chainDigest(parent, agent.dist(image, `${name}.qcow2`))}`).toBe(`${name}: ${recorded}`);
    parent = recorded;
  }
}

/**
 * A layer chain carried across CI agents: each agent is its own git clone
 * with its own Nx cache, blob cache and dist/, and the agents share only an
 * Nx remote cache (tools/cache-server) and an S3 blob store. Agent A builds
 * the lower layers, B the top one and the image, C exports and boots what
 * it never built; a fourth clone that runs the whole build alone gets the
 * same chain.
 */
describe('three CI agents, one remote cache and one blob store', () => {
  let shared: SharedCaches;
  let origin: NxWorkspace;
  const agents: CiAgent[] = [];
  const agent = async (name: string) => {
    const created = await CiAgent.clone(name, origin, shared);
    agents.push(created);
    return created;
  };

  beforeAll(async () => {
    shared = await SharedCaches.start();
    origin = new NxWorkspace({ images: ['tiny', 'tiny-boot'] });
    await origin.commitAll();
  });

  afterEach(async () => {
    for (const each of agents) await tearDownHost(each.workspace);
  });

  afterAll(async () => {
    agents.splice(0).forEach((each) => each.remove());
    origin.remove();
    await shared.close();
  });

  it('A builds up to 10_hello, B builds 20_motd and the image on them, C flattens what it never built; a clone building alone gets the same chain', async () => {
    const a = await agent('a');
    const built = await a.nxOk(['run', 'tiny-10_hello:build']);
    expect(tasksRun(built)).toEqual(['image-tiny:base', 'tiny-00_disk:build', 'tiny-10_hello:build']);
    expect(await shared.blobs()).toEqual(
      CHAIN.slice(0, 3)
        .map((name) => a.ref('tiny', name).sha256)
        .sort(),
    );

    // B: A's layers are remote cache hits (refs and digests); 10_hello's chain comes from the store only because 20_motd builds on it.
    const b = await agent('b');
    const started = Date.now();
    const running = b.start(['build', 'image-tiny']);
    await running.waitForOutput('20_motd of image tiny: in no cache, building', 120_000);
    const coldStart = (Date.now() - started) / 1000;
    const { exitCode, output } = await running.exited;
    expect(exitCode).toBe(0);
    const blobBytes = CHAIN.slice(0, 3).reduce((sum, name) => sum + b.ref('tiny', name).size, 0);
    const entryBytes = shared.nxEntries().map((hash) => statSync(path.join(shared.nxCache.dir, hash)).size);
    console.log(
      `cold agent: started building 20_motd ${coldStart.toFixed(1)} s after nx started, having restored 3 refs and downloaded ${blobBytes} bytes in 3 blobs; ` +
        `the remote cache's entries so far: ${entryBytes.join(', ')} bytes`,
    );
    expect(remoteCacheHits(output)).toEqual(['image-tiny:base', 'tiny-00_disk:build', 'tiny-10_hello:build']);
    expect(tasksRun(output)).toEqual(['image-tiny:build', 'tiny-20_motd:build']);
    expect(output).toMatch(/downloaded 10_hello\.qcow2/);
    await expectSoundChain(b, 'tiny', CHAIN);
    expect(b.digests('tiny', CHAIN.slice(0, 3))).toEqual(a.digests('tiny', CHAIN.slice(0, 3)));

    // C: every layer is a remote hit; flatten fetches the chain from the store and exports it.
    const c = await agent('c');
    const exported = await c.nxOk(['run', 'image-tiny:flatten']);
    expect(remoteCacheHits(exported)).toEqual(['image-tiny:base', 'tiny-00_disk:build', 'tiny-10_hello:build', 'tiny-20_motd:build']);
    expect(tasksRun(exported)).toEqual(['image-tiny:flatten']);
    expect(c.cachedBlobs()).toEqual(CHAIN.map((name) => b.ref('tiny', name).sha256).sort());
    const exportFile = c.dist('tiny', 'export/qcow2/tiny.qcow2');
    expect(JSON.parse((await execa('qemu-img', ['info', '--output=json', exportFile])).stdout)['backing-filename']).toBeUndefined();
    expect(await readFilesFromImage(exportFile, Object.keys(TINY_FILES))).toEqual(TINY_FILES);
    await expectSoundChain(c, 'tiny', CHAIN);

    // A fourth clone runs the whole build and export alone: the task hashes it computes find every layer the three agents stored.
    const alone = await agent('alone');
    const whole = await alone.nxOk(['run-many', '-t', 'build', 'flatten', '-p', 'image-tiny']);
    expect(remoteCacheHits(whole)).toEqual(['image-tiny:base', 'tiny-00_disk:build', 'tiny-10_hello:build', 'tiny-20_motd:build']);
    expect(tasksRun(whole)).toEqual(['image-tiny:build', 'image-tiny:flatten']);
    expect(alone.digests('tiny', CHAIN)).toEqual(b.digests('tiny', CHAIN));
    expect(readFileSync(alone.dist('tiny', 'export/qcow2/tiny.qcow2.sha256'), 'utf8')).toBe(readFileSync(`${exportFile}.sha256`, 'utf8'));
  });

  it('A builds tiny-boot; C, which built nothing, boot-checks it from the shared caches', async () => {
    const a = await agent('boot-a');
    await a.nxOk(['build', 'image-tiny-boot']);
    const c = await agent('boot-c');
    const output = await c.nxOk(['run', 'image-tiny-boot:test-boot', '--check']);
    expect(remoteCacheHits(output)).toEqual(['image-tiny-boot:base', 'tiny-boot-00_disk:build', 'tiny-boot-10_kernel:build', 'tiny-boot-20_init:build']);
    // (tasksRun leaves out a task run with options; this line is its real run, a cache hit would end in [... cache].)
    expect(output).toMatch(/^> nx run image-tiny-boot:test-boot --check$/m);
    expect(output).toMatch(/downloaded 20_init\.qcow2/);
    expect(output.replace(/\r?\n/g, '')).toMatch(/tiny-boot: init\s*reached/);
    expect(output).toMatch(/image tiny-boot booted/);
    expect(c.digests('tiny-boot', BOOT_CHAIN)).toEqual(a.digests('tiny-boot', BOOT_CHAIN));
    await expectSoundChain(c, 'tiny-boot', BOOT_CHAIN);
  });
});
