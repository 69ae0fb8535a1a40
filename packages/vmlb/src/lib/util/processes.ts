import { readFileSync } from 'node:fs';

/**
 * Whether a PID names a live process. A zombie (exited, not yet reaped by
 * its parent) counts as gone: a daemonized qemu-storage-daemon is reaped by
 * PID 1, possibly much later than it exits.
 */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 3, after the parenthesised command name (which may contain spaces).
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** The command line of a process, or undefined when it is gone. */
export function commandLineOf(pid: number): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return undefined;
  }
}

const sleep = (milliseconds: number) => new Promise((resolve) => setTimeout(resolve, milliseconds));

/**
 * Waits until a process is gone; true when it went within the time. Polls
 * every 2 ms at first, backing off to 20 ms: a process that was just
 * stopped is usually gone within a few milliseconds, and a build waits
 * for two of them (the disk's daemon, the leftover watcher).
 */
export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  let pause = 2;
  while (isAlive(pid)) {
    if (Date.now() >= deadline) return false;
    await sleep(pause);
    pause = Math.min(pause * 2, 20);
  }
  return true;
}

/**
 * Stops a process by PID: SIGTERM, then SIGKILL if it has not exited in
 * `graceMs`. Returns how it ended. Never by name: another build's daemon
 * must not be touched.
 */
export async function stopProcess(pid: number, graceMs = 10_000): Promise<'not-running' | 'terminated' | 'killed'> {
  if (!isAlive(pid)) return 'not-running';
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return 'not-running';
  }
  if (await waitForExit(pid, graceMs)) return 'terminated';
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return 'terminated';
  }
  await waitForExit(pid, 5_000);
  return 'killed';
}
