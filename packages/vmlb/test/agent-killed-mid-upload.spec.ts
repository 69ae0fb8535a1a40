import { chainDigest, ROOT_DIGEST } from '../src/lib/cache-identity/digest';
import { type AgentRoutes, CiAgent, SharedCaches } from './support/ci-agents';
import { readFilesFromImage } from './support/disk-read';
import { describeLeftovers, findLeftovers } from './support/host-state';
import { killProcessGroups, tearDownHost } from './support/host-teardown';
import { NxWorkspace, remoteCacheHits, type RunningNx, tasksRun } from './support/nx-workspace';
import { type ProxiedRequest, type StallingProxy, startStallingProxy } from './support/stalling-proxy';

const CHAIN = ['base', '00_disk', '10_hello', '20_motd'];
const LAYERS = ['tiny-00_disk:build', 'tiny-10_hello:build', 'tiny-20_motd:build'];
const TINY_FILES = { '/etc/hello': 'hello from layer 10_hello of tiny', '/etc/motd': 'Welcome to tiny, built by vmlb.' };

/** Polls `check` until it holds; fails, naming `what`, when it still does not after `timeoutMs`. */
async function eventually(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: still not so after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * A CI agent killed (SIGKILL to its nx process group, as a cancelled job or
 * a lost runner) while it uploads: half of a blob has reached the S3 store,
 * or half of a layer's entry has reached the Nx remote cache. The next
 * agents must never use the half-stored bytes: they build again what was
 * not published whole, restore what was, and the store ends up sound.
 */
describe('a CI agent killed in the middle of an upload', () => {
  let shared: SharedCaches;
  let origin: NxWorkspace;
  let proxy: StallingProxy | undefined;
  let killed: RunningNx | undefined;
  const agents: CiAgent[] = [];

  const agent = async (name: string, routes: AgentRoutes = {}) => {
    const created = await CiAgent.clone(name, origin, shared, routes);
    agents.push(created);
    return created;
  };
  /** Starts `nx <args>` on an agent, waits until the proxy holds the upload it picks, and kills the agent's whole process group. */
  const killDuringUpload = async (on: CiAgent, args: string[]): Promise<ProxiedRequest> => {
    killed = on.start(args);
    const ended = killed.exited.then(({ output }) => {
      throw new Error(`nx ended before the upload stalled:\n${output}`);
    });
    const stalled = await Promise.race([proxy!.stalled, ended]);
    await killProcessGroups([killed.pid]);
    return stalled;
  };
  /** Builds the image on a fresh agent that reaches the caches directly, then checks its chain against its files. */
  const nextAgentBuilds = async () => {
    const b = await agent('b');
    const output = await b.nxOk(['build', 'image-tiny']);
    let parent = ROOT_DIGEST;
    for (const name of CHAIN) {
      const digest = b.digests('tiny', [name])[name];
      expect(`${name}: ${await chainDigest(parent, b.dist('tiny', `${name}.qcow2`))}`).toBe(`${name}: ${digest}`);
      parent = digest;
    }
    return { b, output };
  };
  /** A third agent exports what the shared caches hold and reads it back. */
  const thirdAgentExports = async () => {
    const c = await agent('c');
    const output = await c.nxOk(['run', 'image-tiny:flatten']);
    expect(remoteCacheHits(output)).toEqual(['image-tiny:base', ...LAYERS]);
    expect(await readFilesFromImage(c.dist('tiny', 'export/qcow2/tiny.qcow2'), Object.keys(TINY_FILES))).toEqual(TINY_FILES);
  };

  beforeAll(async () => {
    origin = new NxWorkspace({ images: ['tiny'] });
    await origin.commitAll();
  });
  beforeEach(async () => {
    shared = await SharedCaches.start();
  });
  afterEach(async () => {
    for (const each of agents) await tearDownHost(each.workspace, { processGroups: [killed?.pid] });
    killed = undefined;
    await proxy?.close();
    proxy = undefined;
    agents.splice(0).forEach((each) => each.remove());
    await shared.close();
  });
  afterAll(() => origin.remove());

  it('while a blob goes to S3: the half-stored object is never used, and the next agent that uploads those bytes replaces it', async () => {
    proxy = await startStallingProxy(shared.s3.env.AWS_ENDPOINT_URL_S3, ({ method, path }) => method === 'PUT' && path.includes('/sha256/'));
    const a = await agent('a', { s3Endpoint: proxy.url });
    // The first blob is the base's: a blank disk, the same bytes wherever it is imported.
    const stalled = await killDuringUpload(a, ['run', 'tiny-10_hello:build']);
    const base = stalled.path.replace(/\?.*/, '').split('/').pop()!;
    expect(describeLeftovers(await findLeftovers(a.root))).toBe('');
    // Nothing reached the Nx cache (the base task never ended); the store kept what arrived of the body.
    expect(shared.nxEntries()).toEqual([]);
    await eventually('the store holds the half-sent object', async () => (await shared.blobs()).includes(base));
    expect(await shared.unsoundBlobs()).toEqual([base]);

    const { b, output } = await nextAgentBuilds();
    expect(tasksRun(output)).toEqual(['image-tiny:base', 'image-tiny:build', ...LAYERS]);
    expect(b.ref('tiny', 'base').sha256).toBe(base);
    expect(output).toMatch(/uploaded base\.qcow2 \(.*\) to s3:\/\/\S+ in [\d.]+ s, replacing .* an interrupted upload had left under its name/);
    expect(await shared.unsoundBlobs()).toEqual([]);
    expect(await shared.blobs()).toEqual(CHAIN.map((name) => b.ref('tiny', name).sha256).sort());
    await thirdAgentExports();
  });

  it("while Nx uploads a layer's cache entry: no partial entry is published; the next agent restores the layers below and builds that one again", async () => {
    let puts = 0;
    // base, 00_disk, then 10_hello: Nx stores each task's entry before it starts the next.
    proxy = await startStallingProxy(shared.nxCache.url, ({ method }) => method === 'PUT' && ++puts === 3);
    const a = await agent('a', { nxCacheUrl: proxy.url });
    await killDuringUpload(a, ['run', 'tiny-10_hello:build']);
    expect(describeLeftovers(await findLeftovers(a.root))).toBe('');
    await eventually('the cache server saw the cut-off PUT end', () => shared.puts.length === 3);
    expect(shared.puts.map((put) => put.status)).toEqual([200, 200, 499]);
    expect(shared.nxEntries()).toHaveLength(2);
    expect(await shared.nxEntriesWhole()).toBe(true);
    // The layer's blob went up before its task ended: whole, named by no ref any cache holds.
    expect(await shared.blobs()).toHaveLength(3);
    expect(await shared.unsoundBlobs()).toEqual([]);

    const { b, output } = await nextAgentBuilds();
    expect(remoteCacheHits(output)).toEqual(['image-tiny:base', 'tiny-00_disk:build']);
    expect(tasksRun(output)).toEqual(['image-tiny:build', 'tiny-10_hello:build', 'tiny-20_motd:build']);
    expect(await shared.unsoundBlobs()).toEqual([]);
    expect(await shared.blobs()).toEqual(expect.arrayContaining(CHAIN.map((name) => b.ref('tiny', name).sha256)));
    expect(shared.nxEntries()).toHaveLength(4);
    await thirdAgentExports();
  });
});
