import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';

/** The repository this test suite belongs to. */
export const REPO_ROOT = path.resolve(__dirname, '../../../..');

export interface NxRun {
  exitCode: number;
  /** stdout and stderr interleaved as printed. */
  output: string;
}

/**
 * A throwaway Nx workspace that uses the built vmlb plugin the way a user's
 * workspace does (through node_modules), holding copies of some of this
 * repository's images. Commands run the real `nx` CLI without its daemon,
 * so every run sees the files as they are.
 */
export class NxWorkspace {
  readonly root: string;

  /**
   * `cacheDirectory`: nx.json's, default `.nx/cache` (this workspace's own);
   * null leaves it out, so that Nx shares one cache between the checkouts of
   * one git repository (in `$HOME/.nx`). `existingRoot`: adopt a checkout
   * made elsewhere (see `clone`).
   */
  constructor(options: { images?: string[]; cacheDirectory?: string | null; nxJson?: Record<string, unknown>; existingRoot?: string } = {}) {
    if (options.existingRoot) {
      this.root = options.existingRoot;
      return;
    }
    this.root = mkdtempSync(path.join(tmpdir(), 'vmlb-ws-'));
    symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(this.root, 'node_modules'));
    writeFileSync(path.join(this.root, 'package.json'), JSON.stringify({ name: 'vmlb-test-workspace', private: true }, null, 2));
    const nxJson = JSON.parse(readFileSync(path.join(REPO_ROOT, 'nx.json'), 'utf8'));
    delete nxJson.$schema;
    if (options.cacheDirectory === null) delete nxJson.cacheDirectory;
    else nxJson.cacheDirectory = options.cacheDirectory ?? '.nx/cache';
    Object.assign(nxJson, options.nxJson ?? {});
    writeFileSync(path.join(this.root, 'nx.json'), JSON.stringify(nxJson, null, 2));
    writeFileSync(path.join(this.root, '.gitignore'), 'node_modules\ndist\n.nx\n');
    mkdirSync(path.join(this.root, 'images'));
    for (const image of options.images ?? []) {
      cpSync(path.join(REPO_ROOT, 'images', image), path.join(this.root, 'images', image), { recursive: true });
    }
  }

  path(...parts: string[]): string {
    return path.join(this.root, ...parts);
  }

  /** Writes an executable layer script (busybox sh inside the image). */
  script(file: string, ...lines: string[]): void {
    const absolute = this.path(file);
    mkdirSync(path.dirname(absolute), { recursive: true });
    writeFileSync(absolute, ['#!/bin/sh', 'set -eu', ...lines, ''].join('\n'), { mode: 0o755 });
  }

  /** Runs `nx <args>`; never throws on a non-zero exit (tests assert on it). */
  async nx(args: string[], options: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<NxRun> {
    const result = await execa(process.execPath, [path.join(REPO_ROOT, 'node_modules/nx/dist/bin/nx.js'), ...args], {
      cwd: this.root,
      all: true,
      reject: false,
      timeout: options.timeoutMs ?? 300_000,
      env: nxEnvironment(options.env),
    });
    return { exitCode: result.exitCode ?? -1, output: String(result.all ?? '') };
  }

  /** Runs `nx` and fails with its whole output when it does not succeed. */
  async nxOk(args: string[], options: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<string> {
    const run = await this.nx(args, options);
    if (run.exitCode !== 0) throw new Error(`nx ${args.join(' ')} exited with ${run.exitCode}:\n${run.output}`);
    return run.output;
  }

  /** Makes the workspace a git repository with everything committed (Nx knows checkouts of one repository by its first commit). */
  async commitAll(): Promise<void> {
    const git = (...args: string[]) => execa('git', ['-c', 'user.name=vmlb test', '-c', 'user.email=test@vmlb.invalid', ...args], { cwd: this.root });
    await git('init', '-q');
    await git('add', '-A');
    await git('commit', '-qm', 'workspace');
  }

  /** A git clone of this workspace (after `commitAll`): a second checkout of the same repository, with nothing built. */
  async clone(): Promise<NxWorkspace> {
    const root = mkdtempSync(path.join(tmpdir(), 'vmlb-ws-'));
    await execa('git', ['clone', '-q', this.root, root]);
    symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(root, 'node_modules'));
    return new NxWorkspace({ existingRoot: root });
  }

  remove(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}

/**
 * The environment every test run of nx gets: no daemon (each run sees the
 * files as they are), no TUI, no cloud, plain output.
 */
export function nxEnvironment(extra: Record<string, string> = {}): Record<string, string | undefined> {
  return {
    NX_DAEMON: 'false',
    NX_TUI: 'false',
    NX_NO_CLOUD: 'true',
    NX_SKIP_NX_CACHE: undefined,
    // Output as on a developer's machine, whatever CI this suite runs in: vmlb streams every task's output in CI.
    CI: 'false',
    NX_STREAM_OUTPUT: undefined,
    NX_PREFIX_OUTPUT: undefined,
    // A remote cache only where a test sets one up.
    NX_SELF_HOSTED_REMOTE_CACHE_SERVER: undefined,
    NX_SELF_HOSTED_REMOTE_CACHE_ACCESS_TOKEN: undefined,
    NX_SKIP_REMOTE_CACHE: undefined,
    NX_VERBOSE_LOGGING: 'false',
    FORCE_COLOR: '0',
    // Every layer a test builds checks its incremental manifest against a full walk of the root.
    VMLB_MANIFEST_VERIFY: '1',
    ...extra,
  };
}

/** Task ids Nx reports as restored from its local cache in a run's output (`nx run <task> [--option=value...]  [local cache]`). */
export function cacheHits(output: string): string[] {
  return [...output.matchAll(/nx run (\S+)(?:\s+--\S+)*\s+\[local cache\]/g)].map((match) => match[1]).sort();
}

/** Task ids Nx reports as restored from its remote cache in a run's output. */
export function remoteCacheHits(output: string): string[] {
  return [...output.matchAll(/nx run (\S+)(?:\s+--\S+)*\s+\[remote cache\]/g)].map((match) => match[1]).sort();
}

/** Task ids Nx ran for real (not from a cache) in a run's output. */
export function tasksRun(output: string): string[] {
  return [...output.matchAll(/^\s*(?:>|✔|✖)?\s*nx run (\S+?)(?:\s+\[[^\]]+\])?\s*$/gm)]
    .filter((match) => !/\[(local|remote) cache\]/.test(match[0]))
    .map((match) => match[1])
    .sort();
}

/** An `nx` run started in the background (see `startNx`). */
export interface RunningNx {
  /** PID of nx, which is also the id of its process group. */
  readonly pid: number;
  /** stdout and stderr so far, interleaved as printed. */
  output(): string;
  /** Resolves once the output contains `text`; rejects (with the output) when nx exits first or the time is up. */
  waitForOutput(text: string, timeoutMs: number): Promise<void>;
  /** Settles when nx has exited: its exit code, or the signal that ended it, and the whole output. */
  readonly exited: Promise<{ exitCode?: number; signal?: string; output: string }>;
}

/**
 * Starts `nx <args>` in a process group of its own (detached), the way a
 * terminal runs a foreground job, so that a test can send a signal to the
 * whole group (`process.kill(-pid, signal)`) as Ctrl-C does, or kill it.
 * Same environment as `NxWorkspace.nx`.
 */
export function startNx(workspace: NxWorkspace, args: string[], options: { env?: Record<string, string> } = {}): RunningNx {
  const subprocess = execa(process.execPath, [path.join(REPO_ROOT, 'node_modules/nx/dist/bin/nx.js'), ...args], {
    cwd: workspace.root,
    detached: true,
    stdin: 'ignore',
    buffer: false,
    reject: false,
    env: nxEnvironment(options.env),
  });
  if (subprocess.pid === undefined) throw new Error(`nx ${args.join(' ')} did not start`);
  let output = '';
  subprocess.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  subprocess.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  let done = false;
  const exited = subprocess.then((result) => {
    done = true;
    return { exitCode: result.exitCode, signal: result.signal, output };
  });
  return {
    pid: subprocess.pid,
    output: () => output,
    exited,
    async waitForOutput(text, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (!output.includes(text)) {
        if (done || Date.now() > deadline) {
          throw new Error(`nx ${args.join(' ')} ${done ? 'exited' : `ran for ${timeoutMs} ms`} without printing '${text}':\n${output}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
  };
}
