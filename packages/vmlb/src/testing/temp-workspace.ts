import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

/** A throwaway folder tree for specs that read real files. */
export class TempWorkspace {
  readonly root = mkdtempSync(path.join(tmpdir(), 'vmlb-spec-'));

  /** Writes a file (creating folders); `executable` sets mode 755. */
  write(file: string, content: string, options: { executable?: boolean } = {}): string {
    const absolute = path.join(this.root, file);
    mkdirSync(path.dirname(absolute), { recursive: true });
    writeFileSync(absolute, content);
    chmodSync(absolute, options.executable ? 0o755 : 0o644);
    return absolute;
  }

  /** Writes an executable layer script. */
  script(file: string, ...lines: string[]): string {
    return this.write(file, ['#!/bin/sh', 'set -eu', ...lines, ''].join('\n'), { executable: true });
  }

  path(...parts: string[]): string {
    return path.join(this.root, ...parts);
  }

  mkdir(dir: string): void {
    mkdirSync(path.join(this.root, dir), { recursive: true });
  }

  remove(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}
