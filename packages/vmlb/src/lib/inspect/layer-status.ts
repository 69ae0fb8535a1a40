import { existsSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { type BuildRecord, builtHere } from '../cache-identity/build-record';
import { isDigest } from '../cache-identity/digest';
import { digestPathFor, manifestPathFor, refPathFor } from '../image/dist-layout';
import { type LayerManifest, type ManifestFile, readManifest, summarizeManifest } from './layer-manifest';
import { isTaskHash, noshareEntryDir, noshareEntryFiles, nxCacheEntryDir } from '../cache-identity/nx-cache-layout';

/**
 * Where each layer of an image stands, base first, without building or
 * restoring anything: the task hash Nx will compute for it, and whether its
 * files are in this workspace, in the local cache, in the remote cache or
 * nowhere yet. This is the model behind `nx run image-<x>:layers`.
 *
 * Layers are looked at in chain order because a layer's hash covers its
 * parents' digests: the digest each parent will have after the next build
 * (from dist/ when current, else from the cache entry that would be
 * restored) is what the layer's hash is computed with. Above a parent whose
 * digest cannot be known (it will be rebuilt, or only the remote cache has
 * it), the layers' hashes cannot be known either, and the table says why.
 */
export type CacheState =
  /** dist/ holds the layer for its current inputs, built by this workspace. */
  | 'built here'
  /** dist/ holds the layer for its current inputs, restored from a cache (built elsewhere). */
  | 'restored here'
  /** Not in dist/, but Nx's local cache (or, for noshare layers, vmlb's local store) has it. */
  | 'in local cache'
  /** Only the remote cache has it. */
  | 'in remote cache'
  /** No cache has it: the next build builds it. */
  | 'not built'
  /** Its hash depends on a parent whose digest is not known yet. */
  | 'unknown';

export type Cacheability = 'cached' | 'noshare' | 'nocache';

export interface StatusLayer {
  /** Layer folder (`10_update`), or `base`; `<image>/<layer>` for a layer of the image a derived image is built on. */
  name: string;
  kind: 'base' | 'build-layer' | 'modify-disk';
  hints: string[];
  cacheability: Cacheability;
  /** Nx task id, e.g. `prod-10_update:build`. */
  taskId: string;
  /** Absolute path of the layer's qcow2 in dist/. */
  qcow2: string;
}

export interface LayerStatus {
  name: string;
  kind: StatusLayer['kind'];
  hints: string[];
  cacheability: Cacheability;
  taskId: string;
  /** The task hash the next build will run under; null when it depends on an unknown parent digest. */
  hash: string | null;
  state: CacheState;
  /** Why, when the state needs explaining (e.g. which parent makes the hash unknown). */
  note?: string;
  /** Chain digest the layer has (in dist/ or in the cache entry); null when not known. */
  digest: string | null;
  /** The overlay file's own size in bytes, and the disk size the guest sees. */
  fileSize: number | null;
  virtualSize: number | null;
  /** The build that produced the files the state refers to. */
  lastBuild: Pick<BuildRecord, 'seconds' | 'finishedAt' | 'host'> | null;
  /** One-line summary of what the layer changed, from its manifest. */
  changes: string | null;
}

export type RemoteLookup = (hash: string) => Promise<'hit' | 'miss' | { unknown: string }>;

export interface StatusSources {
  workspaceRoot: string;
  /** Nx's task hash for `taskId` when the dist folder holds these digest files (path in it, `<image>/<layer>.digest`, → content). */
  hash(taskId: string, digests: Record<string, string>): Promise<string>;
  /** Absolute path of vmlb's dist folder (`dist/images`): a derived image's chain runs through other images' folders in it. */
  distDir: string;
  /** Nx's local cache directory (entries are `<dir>/<hash>/<output paths>`). */
  nxCacheDir: string;
  /** Looks a hash up in the remote cache; absent when none is configured. */
  remote?: RemoteLookup;
  /** Blob mode: a layer's Nx output is its ref, not its qcow2. */
  blobs: boolean;
}

interface Found {
  digest: string;
  manifest?: ManifestFile;
}

export async function layerStatuses(layers: StatusLayer[], sources: StatusSources): Promise<LayerStatus[]> {
  const digests: Record<string, string> = {};
  let blockedBy: { state: CacheState; note: string } | undefined;
  let rebuiltEveryRun: string | undefined;
  const rows: LayerStatus[] = [];

  for (const layer of layers) {
    const base = {
      name: layer.name,
      kind: layer.kind,
      hints: layer.hints,
      cacheability: layer.cacheability,
      taskId: layer.taskId,
    };
    if (blockedBy) {
      rows.push({ ...base, hash: null, state: blockedBy.state, note: blockedBy.note, digest: null, ...describe(undefined) });
      continue;
    }

    const hash = await sources.hash(layer.taskId, digests);
    const inDist = readDist(layer, sources);
    let row: LayerStatus;
    let known: Found | undefined;
    if (inDist && inDist.manifest?.build?.taskHash === hash) {
      known = inDist;
      const here = inDist.manifest.build && builtHere(inDist.manifest.build, sources.workspaceRoot);
      row = { ...base, hash, state: here ? 'built here' : 'restored here', digest: inDist.digest, ...describe(inDist.manifest, inDist) };
    } else if ((known = readLocalCache(layer, hash, sources))) {
      row = {
        ...base,
        hash,
        state: 'in local cache',
        note: layer.cacheability === 'noshare' ? "in vmlb's noshare store" : undefined,
        digest: known.digest,
        ...describe(known.manifest),
      };
    } else {
      const remote = layer.cacheability === 'cached' && sources.remote ? await sources.remote(hash) : 'miss';
      if (remote === 'hit') {
        row = { ...base, hash, state: 'in remote cache', digest: null, ...describe(undefined) };
        blockedBy = { state: 'unknown', note: `its hash needs the digest of ${layer.name}, which only the remote cache has` };
      } else {
        const note = typeof remote === 'object' ? `remote cache not checked: ${remote.unknown}` : undefined;
        row = { ...base, hash, state: 'not built', note, digest: null, ...describe(undefined) };
        blockedBy = { state: 'not built', note: `built after ${layer.name}` };
      }
    }
    if (layer.cacheability === 'nocache') {
      rebuiltEveryRun = layer.name;
      row.note = 'nocache: rebuilt on every run';
    } else if (rebuiltEveryRun && row.state !== 'not built') {
      row.note = `rebuilt on every run, after nocache ${rebuiltEveryRun}`;
    }
    rows.push(row);
    if (known) digests[path.relative(sources.distDir, digestPathFor(layer.qcow2))] = `${known.digest}\n`;
  }
  return rows;
}

/** The layer's files in dist/, when its qcow2 (or ref) and digest are there. */
function readDist(layer: StatusLayer, sources: StatusSources): (Found & { fileSize?: number }) | undefined {
  const cachedFile = sources.blobs ? refPathFor(layer.qcow2) : layer.qcow2;
  if (!existsSync(cachedFile)) return undefined;
  const digest = readDigestFile(digestPathFor(layer.qcow2));
  if (!digest) return undefined;
  return { digest, manifest: readManifest(manifestPathFor(layer.qcow2)), fileSize: fileSizeOf(layer.qcow2) };
}

/**
 * The layer's entry in Nx's local cache (`<cacheDir>/<hash>/<workspace-relative outputs>`),
 * or, for a noshare layer, in vmlb's store beside it.
 */
function readLocalCache(layer: StatusLayer, hash: string, sources: StatusSources): Found | undefined {
  if (!isTaskHash(hash)) return undefined;
  if (layer.cacheability === 'noshare') {
    const entry = noshareEntryFiles(noshareEntryDir(sources.nxCacheDir, hash));
    const digest = readDigestFile(entry.digest);
    return digest ? { digest, manifest: readManifest(entry.manifest) } : undefined;
  }
  if (layer.cacheability === 'nocache') return undefined;
  const entry = nxCacheEntryDir(sources.nxCacheDir, hash);
  const inEntry = (file: string) => path.join(entry, path.relative(sources.workspaceRoot, file));
  const digest = readDigestFile(inEntry(digestPathFor(layer.qcow2)));
  return digest ? { digest, manifest: readManifest(inEntry(manifestPathFor(layer.qcow2))) } : undefined;
}

function describe(manifest: ManifestFile | undefined, inDist?: { fileSize?: number }): Pick<LayerStatus, 'fileSize' | 'virtualSize' | 'lastBuild' | 'changes'> {
  const build = manifest?.build;
  return {
    fileSize: build?.fileSize ?? inDist?.fileSize ?? null,
    virtualSize: build?.virtualSize ?? null,
    lastBuild: build ? { seconds: build.seconds, finishedAt: build.finishedAt, host: build.host } : null,
    changes: manifest ? describeChanges(manifest) : null,
  };
}

function describeChanges(manifest: ManifestFile): string | null {
  if (manifest.kind === 'base') return 'base disk';
  if (manifest.kind === 'modify-disk') return 'disk changed below the filesystem (no file list)';
  if (!manifest.files) return null;
  return summarizeManifest(manifest as LayerManifest);
}

function readDigestFile(file: string): string | undefined {
  try {
    const digest = readFileSync(file, 'utf8').trim();
    return isDigest(digest) ? digest : undefined;
  } catch {
    return undefined;
  }
}

function fileSizeOf(file: string): number | undefined {
  try {
    return statSync(file).size;
  } catch {
    return undefined;
  }
}
