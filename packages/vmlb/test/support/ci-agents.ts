import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { execa } from 'execa';
import { type CacheRequestEvent, type RunningCacheServer, startCacheServer } from '../../../../tools/cache-server/src/server';
import { type S3TestServer, startS3TestServer } from '../../src/testing/s3-server';
import { NxWorkspace, type RunningNx, startNx } from './nx-workspace';

const PREFIX = 'ci/vmlb';

/**
 * What a team's CI agents share, and nothing else: one Nx remote cache
 * (tools/cache-server) and one S3 blob store (s3rver), both on loopback.
 */
export class SharedCaches {
  /** Every PUT the Nx cache answered (a PUT cut off mid-body shows as 499). */
  readonly puts: CacheRequestEvent[] = [];

  private constructor(
    readonly nxCache: RunningCacheServer,
    readonly s3: S3TestServer,
  ) {
    nxCache.on('request', (event) => {
      if (event.method === 'PUT') this.puts.push(event);
    });
  }

  // Each scenario starts from empty shared caches.
  static async start(): Promise<SharedCaches> {
    const dir = mkdtempSync(path.join(tmpdir(), 'vmlb-nx-remote-'));
    return new SharedCaches(await startCacheServer({ dir, port: 0, log: () => undefined }), await startS3TestServer());
  }

  get storeUrl(): string {
    return `s3://${this.s3.bucket}/${PREFIX}`;
  }

  /** The object key of blob `sha256`. */
  blobKey(sha256: string): string {
    return `${PREFIX}/sha256/${sha256}`;
  }

  /** The blobs the store holds, by name. */
  async blobs(): Promise<string[]> {
    return (await this.s3.listKeys(`${PREFIX}/sha256/`)).map((key) => key.split('/').pop()!).sort();
  }

  /** The sha256 of the bytes the store holds under blob `sha256` (undefined when there is no such object). */
  async storedSha256(sha256: string): Promise<string | undefined> {
    if (!(await this.blobs()).includes(sha256)) return undefined;
    const object = await this.s3.client.send(new GetObjectCommand({ Bucket: this.s3.bucket, Key: this.blobKey(sha256) }));
    return createHash('sha256')
      .update(await object.Body!.transformToByteArray())
      .digest('hex');
  }

  /** Blobs whose bytes are not what their name says (a partial upload, a damaged object): none in a sound store. */
  async unsoundBlobs(): Promise<string[]> {
    const unsound: string[] = [];
    for (const sha256 of await this.blobs()) if ((await this.storedSha256(sha256)) !== sha256) unsound.push(sha256);
    return unsound;
  }

  /** The hashes of the entries the Nx cache has published. */
  nxEntries(): string[] {
    return readdirSync(this.nxCache.dir)
      .filter((name) => /^\d+$/.test(name))
      .sort();
  }

  /** Whether every published Nx entry is a whole gzip tar (a partial upload would not be). */
  async nxEntriesWhole(): Promise<boolean> {
    for (const hash of this.nxEntries()) {
      const listing = await execa('tar', ['-tzf', path.join(this.nxCache.dir, hash)], { reject: false });
      if (listing.exitCode !== 0) return false;
    }
    return true;
  }

  async close(): Promise<void> {
    await this.nxCache.close();
    await this.s3.close();
    rmSync(this.nxCache.dir, { recursive: true, force: true });
  }
}

/** Where an agent reaches the shared caches, when not directly (a proxy in between). */
export interface AgentRoutes {
  nxCacheUrl?: string;
  s3Endpoint?: string;
}

/**
 * One CI agent: a git clone of the workspace of its own, with its own Nx
 * cache (nx.json's cacheDirectory is inside the clone), blob cache and
 * dist/. It reaches the others only through the shared caches' URLs, set
 * the way a CI job sets them: NX_SELF_HOSTED_REMOTE_CACHE_SERVER,
 * VMLB_BLOB_STORE and the AWS_* variables.
 */
export class CiAgent {
  private constructor(
    readonly name: string,
    readonly workspace: NxWorkspace,
    readonly blobCache: string,
    readonly env: Record<string, string>,
  ) {}

  // A clone of `origin` (committed with commitAll) set up as an agent.
  static async clone(name: string, origin: NxWorkspace, shared: SharedCaches, routes: AgentRoutes = {}): Promise<CiAgent> {
    const workspace = await origin.clone();
    const blobCache = mkdtempSync(path.join(tmpdir(), `vmlb-agent-${name}-blobs-`));
    const env = {
      ...shared.s3.env,
      ...(routes.s3Endpoint ? { AWS_ENDPOINT_URL_S3: routes.s3Endpoint } : {}),
      VMLB_BLOB_STORE: shared.storeUrl,
      VMLB_BLOB_CACHE: blobCache,
      NX_SELF_HOSTED_REMOTE_CACHE_SERVER: routes.nxCacheUrl ?? shared.nxCache.url,
    };
    return new CiAgent(name, workspace, blobCache, env);
  }

  get root(): string {
    return this.workspace.root;
  }

  nx(args: string[]) {
    return this.workspace.nx([...args, '--output-style=static'], { env: this.env });
  }

  nxOk(args: string[]): Promise<string> {
    return this.workspace.nxOk([...args, '--output-style=static'], { env: this.env });
  }

  /** `nx <args>` in the background, in a process group of its own (to be killed as a CI runner kills a job). */
  start(args: string[]): RunningNx {
    return startNx(this.workspace, [...args, '--output-style=static'], { env: this.env });
  }

  dist(image: string, file: string): string {
    return this.workspace.path('dist/images', image, file);
  }

  /** The `.digest` of each named file of an image's chain. */
  digests(image: string, names: string[]): Record<string, string> {
    return Object.fromEntries(names.map((name) => [name, readFileSync(this.dist(image, `${name}.digest`), 'utf8').trim()]));
  }

  /** The ref of one file of an image's chain. */
  ref(image: string, name: string): { sha256: string; size: number; parent?: string } {
    return JSON.parse(readFileSync(this.dist(image, `${name}.ref`), 'utf8'));
  }

  /** The blobs in this agent's blob cache. */
  cachedBlobs(): string[] {
    const dir = path.join(this.blobCache, 'sha256');
    return existsSync(dir) ? readdirSync(dir).sort() : [];
  }

  remove(): void {
    this.workspace.remove();
    rmSync(this.blobCache, { recursive: true, force: true });
  }
}
