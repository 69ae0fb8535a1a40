import { chmodSync, cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

/**
 * A throwaway folder tree for specs that read real files, in the manner of
 * Nx's `TempFs`: `new TempWorkspace()` in a `beforeAll`/`beforeEach` (or at
 * the top of a `describe`), `remove()` after, `createFiles({...})` for the
 * files a test starts from.
 */
export class TempWorkspace {
  readonly root = mkdtempSync(path.join(tmpdir(), 'vmlb-spec-'));

  /** Writes a file (creating folders); `executable` sets mode 755. Returns its absolute path. */
  write(file: string, content: string | Uint8Array, options: { executable?: boolean } = {}): string {
    const absolute = path.join(this.root, file);
    mkdirSync(path.dirname(absolute), { recursive: true });
    writeFileSync(absolute, content);
    chmodSync(absolute, options.executable ? 0o755 : 0o644);
    return absolute;
  }

  /** Writes several files at once, `{ 'relative/path': content }` (as Nx's `TempFs.createFiles`). */
  createFiles(files: Record<string, string | Uint8Array>): void {
    for (const [file, content] of Object.entries(files)) this.write(file, content);
  }

  /** Writes an executable layer script. */
  script(file: string, ...lines: string[]): string {
    return this.write(file, ['#!/bin/sh', 'set -eu', ...lines, ''].join('\n'), { executable: true });
  }

  path(...parts: string[]): string {
    return path.join(this.root, ...parts);
  }

  /** Makes a folder (and its parents); returns its absolute path. */
  mkdir(dir: string): string {
    const absolute = path.join(this.root, dir);
    mkdirSync(absolute, { recursive: true });
    return absolute;
  }

  /** Copies a file or folder of the workspace to another place in it (e.g. a chain to damage); returns the copy's absolute path. */
  copy(from: string, to: string): string {
    const absolute = path.join(this.root, to);
    cpSync(path.join(this.root, from), absolute, { recursive: true });
    return absolute;
  }

  remove(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}
