import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import type { LocalBlobCache } from './local-cache';
import type { RemoteBlobStore } from './store';
import { type LayerRef, readRef, writeRef } from './layer-ref';
import { refPathFor } from '../image/dist-layout';
import { formatBytes } from '../util/units';
import type { Log } from '../util/log';

/** Where blob mode keeps and finds layer files. */
export interface BlobStores {
  local: LocalBlobCache;
  /** The shared store; none when blob mode runs with the local cache only. */
  remote?: RemoteBlobStore;
}

/** More parents than any real image has layers: a walk past this is a loop. */
const MAX_CHAIN_LENGTH = 1000;

/** A ref whose blob is in no store this machine can reach. */
export class BlobMissingError extends Error {}

/**
 * Turns a freshly built qcow2 in dist/ into a blob: the file moves into the
 * local blob cache, a link to it takes its place, the ref is written beside
 * it and, unless the layer is noshare, the blob is uploaded to the shared
 * store, all before the task ends, so that a ref reaching any Nx cache
 * always names a blob the store already has.
 */
export async function publishLayerFile(
  file: string,
  identity: { sha256: string; digest: string; parent?: string; builtBy: string },
  stores: BlobStores,
  options: { share: boolean; log: Log; signal?: AbortSignal },
): Promise<LayerRef> {
  const size = (await fs.stat(file)).size;
  await stores.local.adopt(identity.sha256, file);
  await placeBlob(stores.local, identity.sha256, file);
  const ref: LayerRef = {
    sha256: identity.sha256,
    size,
    digest: identity.digest,
    ...(identity.parent ? { parent: identity.parent } : {}),
    builtBy: identity.builtBy,
  };
  if (options.share && stores.remote) {
    const started = Date.now();
    const outcome = await stores.remote.upload(identity.sha256, stores.local.pathOf(identity.sha256), {
      onProgress: progressLogger(`vmlb: uploading ${path.basename(file)} to ${stores.remote.url}`, options.log),
      signal: options.signal,
    });
    const name = path.basename(file);
    const took = `${((Date.now() - started) / 1000).toFixed(1)} s`;
    options.log(
      outcome === 'exists'
        ? `vmlb: ${name} (sha256 ${identity.sha256.slice(0, 12)}) is already in ${stores.remote.url}`
        : outcome === 'uploaded'
          ? `vmlb: uploaded ${name} (${formatBytes(size)}) to ${stores.remote.url} in ${took}`
          : `vmlb: uploaded ${name} (${formatBytes(size)}) to ${stores.remote.url} in ${took}, replacing the ${formatBytes(outcome.replaced)} an interrupted upload had left under its name`,
    );
  }
  await writeRef(refPathFor(file), ref);
  return ref;
}

/**
 * Puts every file of the chain ending in `top` in place in its dist/ folder,
 * from the local blob cache (a link) or else from the shared store
 * (downloaded, sha256-checked, then linked). Files already in place are left
 * alone. Returns how many files came from where.
 */
export async function materialiseChain(
  top: string,
  stores: BlobStores,
  options: { log: Log; signal?: AbortSignal },
): Promise<{ present: number; linked: number; downloaded: number; downloadedBytes: number }> {
  const chain: Array<{ file: string; ref: LayerRef }> = [];
  const visited = new Set<string>();
  for (let file: string | undefined = top; file;) {
    const refPath = refPathFor(file);
    // readRef keeps parents in the folder and off the layer itself; a longer cycle (a → b → a) ends here.
    if (visited.has(file) || visited.size >= MAX_CHAIN_LENGTH) {
      throw new Error(
        `The layer refs above ${path.basename(file)} in ${path.dirname(file)} ${visited.has(file) ? `form a cycle (${[...visited, file].map((f) => path.basename(f)).join(' → ')})` : `name more than ${MAX_CHAIN_LENGTH} parents`}: ` +
          `they were not written by vmlb. Delete the .ref files there and build the image again.`,
      );
    }
    visited.add(file);
    let ref: LayerRef;
    try {
      ref = await readRef(refPath);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        // dist/<image>/: the folder is named for the image. With a shared cache the build restores refs, it builds nothing.
        const image = path.basename(path.dirname(refPath));
        throw new BlobMissingError(
          `${refPath} does not exist: build the image first: nx build image-${image} (where a remote cache holds its layers, that only restores their refs).`,
        );
      }
      throw error;
    }
    chain.push({ file, ref });
    file = ref.parent ? path.join(path.dirname(file), ref.parent) : undefined;
  }
  const counts = { present: 0, linked: 0, downloaded: 0, downloadedBytes: 0 };
  for (const { file, ref } of chain.reverse()) {
    if (await isPlaced(file, ref.sha256)) {
      counts.present += 1;
      continue;
    }
    if (!(await stores.local.has(ref.sha256))) {
      await download(file, ref, stores, options);
      counts.downloaded += 1;
      counts.downloadedBytes += ref.size;
    } else {
      counts.linked += 1;
    }
    await placeBlob(stores.local, ref.sha256, file);
  }
  return counts;
}

async function download(file: string, ref: LayerRef, stores: BlobStores, options: { log: Log; signal?: AbortSignal }): Promise<void> {
  const name = path.basename(file);
  if (!stores.remote) {
    throw new BlobMissingError(
      `${name} (sha256 ${ref.sha256}) is not in this machine's blob cache ${stores.local.root}, and no shared blob store is configured ` +
        `(VMLB_BLOB_STORE or the vmlb plugin's blobStore option). Rebuild it: nx run ${ref.builtBy} --skip-nx-cache`,
    );
  }
  if (!(await stores.remote.has(ref.sha256))) {
    throw new BlobMissingError(
      `${name} (sha256 ${ref.sha256}) is neither in this machine's blob cache ${stores.local.root} nor in ${stores.remote.url}. ` +
        `Rebuild it: nx run ${ref.builtBy} --skip-nx-cache`,
    );
  }
  const temporary = await stores.local.temporaryPath(ref.sha256);
  const started = Date.now();
  try {
    await stores.remote.download(ref.sha256, temporary, {
      onProgress: progressLogger(`vmlb: downloading ${name} from ${stores.remote.url}`, options.log),
      signal: options.signal,
      // The ref knows the size: a store serving more (a FIFO, /dev/zero, a wrong object) is cut off there.
      expectedBytes: ref.size,
    });
    await stores.local.adopt(ref.sha256, temporary);
  } finally {
    await fs.rm(temporary, { force: true });
  }
  options.log(`vmlb: downloaded ${name} (${formatBytes(ref.size)}) in ${((Date.now() - started) / 1000).toFixed(1)} s, sha256 verified`);
}

/**
 * Records which blob a dist/ file is, so that a later run knows whether the
 * file there is the one a (possibly newer) ref names without reading it.
 */
interface PlacedMarker {
  sha256: string;
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
}

function markerPathFor(file: string): string {
  return path.join(path.dirname(file), '.vmlb', 'placed', `${path.basename(file)}.json`);
}

async function placeBlob(local: LocalBlobCache, sha256: string, file: string): Promise<void> {
  await local.placeAt(sha256, file);
  const stats = await fs.stat(file);
  const marker: PlacedMarker = { sha256, dev: stats.dev, ino: stats.ino, size: stats.size, mtimeMs: stats.mtimeMs };
  await fs.mkdir(path.dirname(markerPathFor(file)), { recursive: true });
  await fs.writeFile(markerPathFor(file), JSON.stringify(marker));
}

/** Whether `file` is the blob `sha256` as placed by vmlb, unchanged since. */
export async function isPlaced(file: string, sha256: string): Promise<boolean> {
  try {
    const marker = JSON.parse(await fs.readFile(markerPathFor(file), 'utf8')) as PlacedMarker;
    const stats = await fs.stat(file);
    return marker.sha256 === sha256 && marker.dev === stats.dev && marker.ino === stats.ino && marker.size === stats.size && marker.mtimeMs === stats.mtimeMs;
  } catch {
    return false;
  }
}

/** Logs a transfer's progress every 10 %, and only for transfers worth watching. */
function progressLogger(what: string, log: Log): (done: number, total: number) => void {
  let nextTenth = 1;
  return (done, total) => {
    if (total < 64 * 1024 * 1024) return;
    const tenth = Math.floor((done / total) * 10);
    if (tenth >= nextTenth && done < total) {
      log(`${what}: ${tenth * 10} % of ${formatBytes(total)}`);
      nextTenth = tenth + 1;
    }
  };
}

/** Before a layer builds in blob mode: its parent chain in place, and its old ref gone (a ref is written last, once its blob is stored). */
export async function prepareLayerBuild(parent: string, output: string, stores: BlobStores, options: { log: Log; signal?: AbortSignal }): Promise<void> {
  await materialiseChain(parent, stores, options);
  await fs.rm(refPathFor(output), { force: true });
}

/** Whether the chain ending in `top` can be put in place from the stores; false when a blob is in none of them. */
export async function chainBlobsReachable(top: string, stores: BlobStores, log: Log): Promise<boolean> {
  try {
    await materialiseChain(top, stores, { log });
    return true;
  } catch (error) {
    if (error instanceof BlobMissingError) return false;
    throw error;
  }
}
