import { shellWord } from './shell-quote';
import { spawnCollect } from './spawn-collect';

/** A host command that failed; the message carries the command line, exit status and output tail. */
export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: number | undefined,
    readonly output: string,
    message: string,
  ) {
    super(message);
    this.name = 'CommandError';
  }
}

export interface RunOptions {
  /** Working directory. */
  cwd?: string;
  /** Extra environment (merged over the current one). */
  env?: Record<string, string | undefined>;
  /** Text fed to standard input. */
  input?: string;
  /** Stream the command's output to ours as it runs (for long steps users should watch). */
  stream?: boolean;
  /** Milliseconds before the command is killed. */
  timeout?: number;
  /** Return non-zero exits instead of throwing. */
  reject?: boolean;
  /** Aborting it stops the command (SIGTERM) — how a build passes on Ctrl-C. */
  signal?: AbortSignal;
  /** Run with exactly `env`, not the current environment plus `env`. */
  cleanEnv?: boolean;
  /** The signal `signal` stops the command with (default SIGTERM). */
  killSignal?: NodeJS.Signals;
  /** Standard input, output and error are this process's own (an interactive program); nothing is captured. */
  inherit?: boolean;
  /** Descriptors of this process the command gets as its 3, 4, ... (the terminal, for a shell it may open later). */
  passFds?: number[];
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/**
 * Runs a host command without a shell (arguments are never re-parsed) and
 * returns its output. On failure the error names the command, the exit code
 * and the last lines of its output, which is what a user needs to act.
 */
export async function run(file: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const env = options.cleanEnv ? { ...options.env } : { ...process.env, ...options.env };
  const result = await spawnCollect(file, args, {
    cwd: options.cwd,
    env,
    input: options.input,
    stream: options.stream,
    inherit: options.inherit,
    passFds: options.passFds,
    timeout: options.timeout,
    signal: options.signal,
    killSignal: options.killSignal ?? 'SIGTERM',
  });
  const { stdout, stderr } = result;
  const exitCode = result.exitCode ?? -1;
  const failed = result.startError !== undefined || result.exitCode !== 0;
  if (failed && options.reject !== false) {
    const output = [stderr, stdout].filter(Boolean).join('\n');
    const status = result.startError
      ? `could not start (${result.startError.message})`
      : result.canceled
        ? 'was stopped'
        : result.timedOut
          ? `timed out after ${options.timeout} ms`
          : result.signal
            ? `was killed by ${result.signal}`
            : `exited with code ${result.exitCode}`;
    throw new CommandError(commandLine(file, args), result.exitCode, output, `${commandLine(file, args)} ${status}${output ? `:\n${tail(output, 20)}` : ''}`);
  }
  return { stdout, stderr, exitCode };
}

/** The last `lines` lines of a text. */
export function tail(text: string, lines: number): string {
  const all = text.trimEnd().split('\n');
  return all.slice(-lines).join('\n');
}

/** A command line as a user would type it, for messages. */
export function commandLine(file: string, args: readonly string[]): string {
  return [file, ...args].map(shellWord).join(' ');
}
