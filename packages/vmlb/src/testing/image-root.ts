import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type LayerManifest, diffSnapshots } from '../lib/inspect/layer-manifest';
import { snapshotRoot } from '../lib/inspect/root-snapshot';

/**
 * A scratch folder standing for a mounted image root in the inspect specs:
 * a fresh one for each test, removed after it.
 */

/** Registers the folder's beforeEach/afterEach and gives its path and helpers. */
export function scratchImageRoot(prefix: string) {
  let root = '';
  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  });
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  /** The host path of a path inside the image. */
  const at = (imagePath: string) => path.join(root, imagePath);

  return {
    /** The folder of the current test. */
    get root(): string {
      return root;
    },
    at,
    /** Writes a file inside the test root, creating its folders. */
    write(imagePath: string, content: string | Buffer = ''): string {
      const target = at(imagePath);
      fs.mkdirSync(path.dirname(target), { recursive: true });
      fs.writeFileSync(target, content);
      return target;
    },
    /** Snapshots the root, lets `change` alter it, snapshots again and diffs. */
    async manifestOf(change: () => void, options?: { maxEntries?: number }): Promise<LayerManifest> {
      const before = await snapshotRoot(root);
      change();
      return diffSnapshots(before, await snapshotRoot(root), options);
    },
  };
}
