import * as path from 'node:path';
import type { NxJsonConfiguration } from '@nx/devkit';
import { nxDevkit } from '../util/nx-devkit';
import { LocalBlobCache } from './local-cache';
import type { BlobStores } from './chain';

/** Environment variable that turns blob mode on and names the shared store (overrides nx.json). */
export const BLOB_STORE_ENV = 'VMLB_BLOB_STORE';

/** The `blobStore` value that turns blob mode on with this machine's blob cache only. */
export const LOCAL_ONLY = 'local';

/**
 * Whether layers are built in blob mode: the vmlb plugin's `blobStore`
 * option in nx.json, or VMLB_BLOB_STORE. The plugin decides it when it
 * infers the targets (their outputs differ); executors only ask where the
 * shared store is.
 */
export function blobModeSetting(pluginOption: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const value = env[BLOB_STORE_ENV] || pluginOption;
  return value ? value : undefined;
}

/** The vmlb plugin's `blobStore` option as written in the workspace's nx.json. */
export function blobStoreOptionFromNxJson(workspaceRoot: string): string | undefined {
  const plugins = nxDevkit().readJsonFile<NxJsonConfiguration>(path.join(workspaceRoot, 'nx.json')).plugins ?? [];
  for (const entry of plugins) {
    if (typeof entry === 'object' && entry.plugin === 'vmlb') {
      const value = (entry.options as { blobStore?: unknown } | undefined)?.blobStore;
      if (value !== undefined && typeof value !== 'string') {
        throw new Error(
          `nx.json: the vmlb plugin's blobStore option must be a string (file:///path, s3://bucket/prefix or "local"), got ${JSON.stringify(value)}.`,
        );
      }
      return value;
    }
  }
  return undefined;
}

/** The stores a blob-mode executor uses, from VMLB_BLOB_STORE / nx.json and VMLB_BLOB_CACHE. */
export async function openBlobStores(workspaceRoot: string, env: NodeJS.ProcessEnv = process.env): Promise<BlobStores> {
  const setting = blobModeSetting(blobStoreOptionFromNxJson(workspaceRoot), env);
  const local = LocalBlobCache.fromEnvironment(env);
  if (!setting || setting === LOCAL_ONLY) return { local };
  const { openRemoteBlobStore } = await import('./store');
  return { local, remote: await openRemoteBlobStore(setting, env) };
}
