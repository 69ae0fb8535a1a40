import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { execa } from 'execa';
import { shellQuote } from '../../src/lib/util/shell-quote';
import { type NxWorkspace, REPO_ROOT, nxEnvironment } from './nx-workspace';
import { describeLeftovers, findLeftovers } from './host-state';

/** An `nx` run on a terminal of its own (see `startOnTerminal`): keys typed into it, what it printed. */
export interface TerminalSession {
  /** PID of util-linux `script`, which leads the session's process group. */
  readonly pid: number;
  /** Everything printed so far, with the terminal's CR LF turned into LF. */
  output(): string;
  /** Types `text` (end a line with `\n`). */
  type(text: string): void;
  /** Resolves once the output contains `text`; rejects with the output when the run ends first or the time is up. */
  waitForOutput(text: string, timeoutMs: number): Promise<void>;
  /** Settles when the run is over: nx's exit code (script passes it on) and the whole output. */
  readonly exited: Promise<{ exitCode?: number; output: string }>;
}

/**
 * Runs `nx <args>` the way a user at a terminal does: util-linux `script`
 * gives it a pseudo-terminal (standard input a TTY, as Nx, vmlb and any
 * shell see it), and the test types into that terminal. `script` leads a
 * process group of its own (detached), so a teardown can kill the whole
 * run by PID. Same environment as `NxWorkspace.nx`, plus `env`.
 */
export function startOnTerminal(workspace: NxWorkspace, args: string[], options: { env?: Record<string, string> } = {}): TerminalSession {
  const nx = [process.execPath, path.join(REPO_ROOT, 'node_modules/nx/dist/bin/nx.js'), ...args].map(shellQuote).join(' ');
  const subprocess = execa('script', ['--quiet', '--return', '--command', nx, '/dev/null'], {
    cwd: workspace.root,
    detached: true,
    stdin: 'pipe',
    buffer: false,
    reject: false,
    env: { ...nxEnvironment(options.env), TERM: 'xterm', COLUMNS: '200', LINES: '50' },
  });
  if (subprocess.pid === undefined) throw new Error(`script (nx ${args.join(' ')}) did not start`);
  let output = '';
  const append = (chunk: Buffer) => (output += chunk.toString().replace(/\r\n/g, '\n'));
  subprocess.stdout?.on('data', append);
  subprocess.stderr?.on('data', append);
  let done = false;
  const exited = subprocess.then((result) => {
    done = true;
    return { exitCode: result.exitCode, output };
  });
  return {
    pid: subprocess.pid,
    output: () => output,
    exited,
    type: (text) => void subprocess.stdin?.write(text),
    async waitForOutput(text, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (!output.includes(text)) {
        if (done || Date.now() > deadline)
          throw new Error(`nx ${args.join(' ')} ${done ? 'exited' : `ran for ${timeoutMs} ms`} without printing '${text}':\n${output}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    },
  };
}

/**
 * Processes whose command line names a path under `root` other than the
 * test's own: a sandbox's `unshare`, `capsh`, `script` or shell holding an
 * image root (they name it in `--chroot=`), or a hold's `sleep`.
 */
export function processesMentioning(root: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const state = readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1]?.[0];
      const commandLine = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ');
      if (state !== 'Z' && commandLine.includes(root)) found.push(`${entry}: ${commandLine.slice(0, 200)}`);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** Asserts that a workspace left nothing on the host: no mount, loop device, daemon or partial file under it, and no process naming it. */
export async function expectCleanHost(root: string): Promise<void> {
  expect(describeLeftovers(await findLeftovers(root))).toBe('');
  expect(processesMentioning(root)).toEqual([]);
}
