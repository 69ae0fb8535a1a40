import { spawnSync } from 'node:child_process';
import { shellQuote as quote } from '../util/shell-quote';

/** A terminal in the build's sandbox: the interactive shell, a failed script's hold, the caller's terminal settings. */

/** The shell a terminal gets in the sandbox (`nx run image-<x>:shell`, a failed layer): the image's bash when it has one, in /mnt as a script starts. */
export const INTERACTIVE_SHELL = 'cd /mnt; if [ -x /bin/bash ]; then exec /bin/bash -l; fi; exec /bin/sh -l';

/**
 * What a failed script's sandbox does before it goes (`VMLB_PAUSE_AT=failed`):
 * with a terminal (`shell`), an interactive shell in the same mounts (its
 * /tmp, /run and /dev as the script left them) on the caller's standard
 * input and output, passed to the mount shell as descriptors 3 and 4;
 * without one, the mounts held until the build is interrupted. `banner` is
 * said first; `{pid}` in it becomes the PID that holds the mounts.
 */
export interface FailureHold {
  shell: boolean;
  banner: string;
}

/** The mount shell's line after the script: on failure, the banner, then the shell (`interactiveSandbox`) or a wait for the end. */
export function failureHoldLine(hold: FailureHold, interactiveSandbox: string): string {
  const format = `${hold.banner.replace(/%/g, '%%').replace('{pid}', '%s')}\n`;
  // exec: the wait is the mount shell itself, which the build's interruption kills.
  const then = hold.shell ? `${interactiveSandbox} <&3 >&4 2>&4 || true` : 'exec sleep infinity';
  // The shell's banner goes to the terminal only, not into the output a failed build quotes.
  return `if [ "$status" -ne 0 ]; then printf ${quote(format)} "$$" >&${hold.shell ? 4 : 2}; ${then}; fi`;
}

/**
 * Mount-shell lines that put the sandbox's devpts (mounted at `dev`/pts)
 * over the host's /dev/pts and /dev/ptmx in the mount namespace: `script`,
 * which runs outside the chroot, then makes its terminal there, and the
 * chrooted shell finds it under its own /dev/pts.
 */
export function sandboxTerminalsLines(dev: string): string[] {
  return [`mount --bind ${quote(`${dev}/pts`)} /dev/pts`, `mount --bind ${quote(`${dev}/pts/ptmx`)} /dev/ptmx`];
}

/**
 * A terminal program stopped by a signal (the build interrupted while its
 * shell is open) leaves the terminal in raw mode: its settings are read
 * before and put back after, whatever happened.
 */
export async function withTerminalSettingsKept<T>(terminal: boolean, work: () => Promise<T>): Promise<T> {
  const saved = terminal && process.stdin.isTTY ? stty(['-g']) : '';
  try {
    return await work();
  } finally {
    if (saved) stty([saved]);
  }
}

/** `stty` on this process's terminal (its standard input); its output, empty when it failed. */
function stty(args: string[]): string {
  const result = spawnSync('stty', args, { stdio: ['inherit', 'pipe', 'ignore'], encoding: 'utf8' });
  return result.status === 0 ? result.stdout.trim() : '';
}
