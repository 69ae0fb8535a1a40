import { readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';

const PACKAGE_ROOT = path.join(__dirname, '..', '..', '..');

/**
 * vmlb's own version. Not part of any task's key (a release must not
 * rebuild layers: see LAYER_FORMAT); it names the code that inferred a
 * project graph. Read at run time: src/lib/util and dist/lib/util both sit
 * three levels below the package root.
 */
export const VMLB_VERSION: string = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')).version;

let codeId: string | undefined;

/**
 * This copy of vmlb's code: its version and the newest modification time
 * of its modules. The plugin's inference cache is keyed on it, so that an
 * edited or rebuilt plugin never serves projects inferred by the old code.
 */
export function vmlbCodeId(): string {
  codeId ??= `${VMLB_VERSION}@${newestModification(path.join(__dirname, '..', '..'))}`;
  return codeId;
}

/** The newest mtime of the files under a folder, in milliseconds. */
function newestModification(folder: string): number {
  let newest = 0;
  for (const entry of readdirSync(folder, { withFileTypes: true })) {
    const entryPath = path.join(folder, entry.name);
    const time = entry.isDirectory() ? newestModification(entryPath) : statSync(entryPath).mtimeMs;
    newest = Math.max(newest, time);
  }
  return newest;
}
