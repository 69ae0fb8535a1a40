import { mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { makeBuildRecord } from '../lib/cache-identity/build-record';
import { ROOT_DIGEST, chainDigest, writeDigest } from '../lib/cache-identity/digest';
import { createBlank, createOverlay } from '../lib/disk/qcow2';
import { digestPathFor, manifestPathFor } from '../lib/image/dist-layout';
import { writeFileAtomic } from '../lib/util/atomic-file';
import { run } from '../lib/util/exec';
import { TempWorkspace } from './temp-workspace';

/** One file of a fake chain: its name without `.qcow2`, and what to put in it. */
export interface FakeLayerSpec {
  name: string;
  /** Virtual size in bytes: required for the first (a blank disk); on an overlay, grows the disk. */
  size?: number;
  /** A qemu-io command run on the file once made, e.g. `write -P 0xab 0 1M`. */
  write?: string;
}

export interface FakeLayer {
  name: string;
  /** The qcow2 file. */
  file: string;
  digestFile: string;
  /** Its chain digest, as in `digestFile`. */
  digest: string;
}

/**
 * A small real qcow2 chain in `dir` (made if missing), base first, as a build
 * leaves it in dist/: the first file a blank disk, each next an overlay on
 * the one before (by vmlb's createBlank and createOverlay), and beside each
 * its digest file, written with vmlb's chainDigest and writeDigest.
 */
export async function writeFakeChain(dir: string, layers: FakeLayerSpec[]): Promise<FakeLayer[]> {
  mkdirSync(dir, { recursive: true });
  const chain: FakeLayer[] = [];
  for (const { name, size, write } of layers) {
    const file = path.join(dir, `${name}.qcow2`);
    const parent = chain.at(-1);
    if (parent) await createOverlay(parent.file, file, { size });
    else if (size === undefined) throw new Error(`writeFakeChain: the first file, ${name}, needs a size`);
    else await createBlank(file, size);
    if (write) await run('qemu-io', ['-c', write, file]);
    const digest = await chainDigest(parent?.digest ?? ROOT_DIGEST, file);
    const digestFile = digestPathFor(file);
    await writeDigest(digestFile, digest);
    chain.push({ name, file, digestFile, digest });
  }
  return chain;
}

/**
 * Writes the manifest a build leaves beside a layer's qcow2
 * (`<layer>.manifest.json`, as vmlb writes it for a modify-disk layer: no
 * file list) with the build record of a build under Nx task hash `taskHash`.
 */
export async function writeFakeManifest(qcow2: string, taskHash: string, kind: 'build-layer' | 'modify-disk' = 'build-layer'): Promise<string> {
  const build = await makeBuildRecord(qcow2, { workspaceRoot: path.dirname(qcow2), startedAt: Date.now(), env: { NX_TASK_HASH: taskHash } });
  const manifestFile = manifestPathFor(qcow2);
  await writeFileAtomic(manifestFile, `${JSON.stringify({ kind, version: 1, files: null, build }, null, 2)}\n`, { sync: false });
  return manifestFile;
}

/**
 * For a spec file: a TempWorkspace holding a fake chain (writeFakeChain) in
 * its `chain/` folder, made before the file's tests and removed after them.
 * `copyChain(name)` copies it to `<name>/` in the workspace, to damage or move.
 */
export function useFakeChain(layers: FakeLayerSpec[]): { workspace: TempWorkspace; chainDir: string; copyChain(name: string): string } {
  const workspace = new TempWorkspace();
  const chainDir = workspace.path('chain');
  beforeAll(() => writeFakeChain(chainDir, layers));
  afterAll(() => workspace.remove());
  return { workspace, chainDir, copyChain: (name) => workspace.copy('chain', name) };
}
