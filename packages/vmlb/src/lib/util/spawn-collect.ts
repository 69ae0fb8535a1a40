import { type ChildProcess, spawn, type StdioOptions } from 'node:child_process';

/** How a child process ended, as `run` reports it. */
export interface Collected {
  stdout: string;
  stderr: string;
  /** The exit code; undefined when it was killed by a signal or never started. */
  exitCode?: number;
  signal?: NodeJS.Signals;
  /** Why it could not start (spawn's error), when it did not. */
  startError?: Error;
  timedOut: boolean;
  canceled: boolean;
}

export interface SpawnCollectOptions {
  cwd?: string;
  env: NodeJS.ProcessEnv;
  input?: string;
  /** Copy the output to ours as it comes, besides capturing it. */
  stream?: boolean;
  inherit?: boolean;
  passFds?: number[];
  timeout?: number;
  signal?: AbortSignal;
  killSignal: NodeJS.Signals;
}

/** A command stopped on timeout or abort that has not exited after this long gets SIGKILL. */
const FORCE_KILL_AFTER_MS = 5000;

/**
 * Spawns `file` without a shell and collects its output as text. Plain
 * node:child_process: loading a process library costs every forked Nx task
 * a noticeable part of its start-up, and a layer task runs a few commands.
 */
export function spawnCollect(file: string, args: readonly string[], options: SpawnCollectOptions): Promise<Collected> {
  return new Promise((resolve) => {
    const stdio: StdioOptions = options.inherit ? 'inherit' : ['pipe', 'pipe', 'pipe', ...(options.passFds ?? [])];
    const result: Collected = { stdout: '', stderr: '', timedOut: false, canceled: false };
    let child: ChildProcess;
    try {
      child = spawn(file, args, { cwd: options.cwd, env: options.env, stdio });
    } catch (error) {
      resolve({ ...result, startError: error as Error });
      return;
    }
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout?.on('data', (chunk: Buffer) => {
      stdout.push(chunk);
      if (options.stream) process.stdout.write(chunk);
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr.push(chunk);
      if (options.stream) process.stderr.write(chunk);
    });
    // A command that does not read its input must not fail the run with EPIPE.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(options.input ?? '');

    let forceKill: NodeJS.Timeout | undefined;
    const stop = (reason: 'timedOut' | 'canceled') => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      result[reason] = true;
      child.kill(options.killSignal);
      forceKill ??= setTimeout(() => child.kill('SIGKILL'), FORCE_KILL_AFTER_MS);
      forceKill.unref();
    };
    const timer = options.timeout ? setTimeout(() => stop('timedOut'), options.timeout) : undefined;
    const onAbort = () => stop('canceled');
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener('abort', onAbort, { once: true });

    let settled = false;
    const finish = (extra: Partial<Collected>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(forceKill);
      options.signal?.removeEventListener('abort', onAbort);
      resolve({
        ...result,
        stdout: stripFinalNewline(Buffer.concat(stdout).toString('utf8')),
        stderr: stripFinalNewline(Buffer.concat(stderr).toString('utf8')),
        ...extra,
      });
    };
    child.on('error', (error) => finish({ startError: error }));
    // 'close' waits for the output pipes, so nothing written at the end is lost.
    child.on('close', (code, signal) => finish({ exitCode: code ?? undefined, signal: signal ?? undefined }));
  });
}

/** One final newline off, as a shell's $(...) would take it. */
function stripFinalNewline(text: string): string {
  return text.endsWith('\r\n') ? text.slice(0, -2) : text.endsWith('\n') ? text.slice(0, -1) : text;
}
