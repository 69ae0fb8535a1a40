import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { execa } from 'execa';

/**
 * What a layer build may leave on the host when it goes wrong, found from
 * the kernel's and the tools' own listings (never from vmlb's state files,
 * which are what is under test). Everything is scoped to one workspace
 * root, so builds of other workspaces on the same machine are never
 * reported, nor touched by `releaseHostLeftovers`.
 */
export interface HostLeftovers {
  /** Mount points at or under the root, deepest first, with their filesystem type. */
  mounts: Array<{ mountPoint: string; fsType: string }>;
  /** Loop devices backed by a file under the root, by one of those (a loop on a loop), or suspects still attached. */
  loopDevices: Array<{ name: string; backFile: string }>;
  /** qemu-storage-daemon and qemu-nbd processes whose command line mentions the root. */
  processes: Array<{ pid: number; commandLine: string }>;
  /** `*.partial` files under the dist folder. */
  partialFiles: string[];
  /** `.vmlb` work folders under the dist folder. */
  workFolders: string[];
}

export interface LeftoverOptions {
  /** The build output folder to search for files; default `<root>/dist`. */
  distDir?: string;
  /** Mount points the test made itself (a tmpfs), not leftovers. */
  ignoreMounts?: string[];
  /**
   * Loop devices seen as leftovers earlier in a test. Once a teardown has
   * lazily unmounted the file behind one, the kernel reports its backing
   * file as `/` or a path that no longer exists: it can no longer be tied
   * to the root by name. Such a device still attached is a leftover.
   */
  suspectLoops?: string[];
}

const isUnder = (root: string, candidate: string) => candidate === root || candidate.startsWith(root.endsWith('/') ? root : `${root}/`);

/** mountinfo escapes space, tab, newline and backslash as octal. */
const decode = (field: string) => field.replace(/\\([0-7]{3})/g, (_match, octal: string) => String.fromCharCode(parseInt(octal, 8)));

export function mountsUnder(root: string): Array<{ mountPoint: string; fsType: string }> {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const fields = line.split(' ');
      const separator = fields.indexOf('-');
      return { mountPoint: decode(fields[4]), fsType: fields[separator + 1] ?? '' };
    })
    .filter(({ mountPoint }) => isUnder(root, mountPoint))
    .sort((a, b) => b.mountPoint.length - a.mountPoint.length);
}

interface LoopListing {
  name: string;
  backFile: string;
  backIno?: number;
  backDevice?: string;
}

async function listLoops(): Promise<LoopListing[]> {
  const { stdout } = await execa('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE,BACK-INO,BACK-MAJ:MIN'], { reject: false });
  if (!String(stdout).trim()) return [];
  const parsed = JSON.parse(String(stdout)) as {
    loopdevices?: Array<{ name: string; 'back-file': string | null; 'back-ino': number | string | null; 'back-maj:min': string | null }>;
  };
  return (parsed.loopdevices ?? []).map((loop) => ({
    name: loop.name,
    backFile: (loop['back-file'] ?? '').replace(/ \(deleted\)$/, ''),
    backIno: loop['back-ino'] === null || loop['back-ino'] === undefined ? undefined : Number(loop['back-ino']),
    backDevice: loop['back-maj:min']?.trim() || undefined,
  }));
}

/** major:minor of a device number as glibc encodes it (what Node's stat reports). */
function majorMinor(dev: number): string {
  const value = BigInt(dev);
  const major = ((value >> 8n) & 0xfffn) | ((value >> 32n) & 0xfffff000n);
  const minor = (value & 0xffn) | ((value >> 12n) & 0xffffff00n);
  return `${major}:${minor}`;
}

/** Whether `loop` is backed by the device node `device` (a loop device on another loop device). */
function isBackedBy(loop: LoopListing, device: string): boolean {
  let node;
  try {
    node = statSync(device);
  } catch {
    return false;
  }
  if (loop.backIno !== undefined && loop.backDevice !== undefined) {
    return loop.backIno === node.ino && loop.backDevice === majorMinor(node.dev);
  }
  return loop.backFile === device;
}

/** A backing file that cannot be the one the device was attached to: `/`, or a path that is gone. */
function unresolvable(backFile: string): boolean {
  if (!backFile) return true;
  try {
    const stat = statSync(backFile);
    return !(stat.isFile() || stat.isBlockDevice());
  } catch {
    return true;
  }
}

/**
 * Notes, until stopped, every loop device attached under the root (or on
 * one that is), polling: the loop devices a run attached, by name, even
 * those whose backing file no longer shows a path under the root once the
 * run is over. Pass them as `suspectLoops`.
 */
export function watchLoops(root: string, intervalMs = 100): { stop(): Promise<string[]> } {
  const seen = new Set<string>();
  let stopped = false;
  const poll = (async () => {
    while (!stopped) {
      for (const loop of await loopDevicesUnder(root)) seen.add(loop.name);
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await poll;
      return [...seen].sort();
    },
  };
}

export async function loopDevicesUnder(root: string, suspects: string[] = []): Promise<Array<{ name: string; backFile: string }>> {
  const loops = await listLoops();
  const found = new Map<string, LoopListing>();
  for (const loop of loops) {
    if (isUnder(root, loop.backFile) || (suspects.includes(loop.name) && unresolvable(loop.backFile))) found.set(loop.name, loop);
  }
  // Loops stacked on those (a modify-disk script's partition loop on the disk's loop).
  for (let added = true; added;) {
    added = false;
    for (const loop of loops) {
      if (found.has(loop.name)) continue;
      if ([...found.keys()].some((device) => isBackedBy(loop, device))) {
        found.set(loop.name, loop);
        added = true;
      }
    }
  }
  return [...found.values()].map(({ name, backFile }) => ({ name, backFile }));
}

/** Processes that are not zombies, with their command line and process group. */
function processes(): Array<{ pid: number; argv: string[]; pgrp: number }> {
  const found: Array<{ pid: number; argv: string[]; pgrp: number }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (state === 'Z' || state === 'X') continue;
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean);
      found.push({ pid: Number(entry), argv, pgrp: Number(pgrp) });
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** Disk daemons serving files under `root`, and vmlb's leftover watchers for work folders under it. */
export function diskProcessesUnder(root: string): Array<{ pid: number; commandLine: string }> {
  return processes()
    .filter(({ argv }) => argv.length > 0 && (['qemu-storage-daemon', 'qemu-nbd'].includes(path.basename(argv[0])) || isLeftoverWatcher(argv)))
    .map(({ pid, argv }) => ({ pid, commandLine: argv.join(' ') }))
    .filter(({ commandLine }) => commandLine.includes(root));
}

/** vmlb's watcher of one layer build (lib/leftover-reaper), by its command line. */
export function isLeftoverWatcher(argv: string[]): boolean {
  return argv.length > 1 && path.basename(argv[1]) === 'leftover-reaper.js';
}

/** PIDs of the leftover watchers for work folders under `root`. */
export function leftoverWatchersUnder(root: string): number[] {
  return (
    processes()
      // Its argument is the watched build, as JSON naming the work folder.
      .filter(({ argv }) => isLeftoverWatcher(argv) && (JSON.parse(argv[2] ?? '{}') as { workDir?: string }).workDir?.startsWith(root))
      .map(({ pid }) => pid)
  );
}

/** Polls until `findLeftovers` reports nothing (a killed build's watcher is releasing); the last report either way. */
export async function waitForCleanHost(root: string, options: LeftoverOptions, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const report = describeLeftovers(await findLeftovers(root, options));
    if (report === '' || Date.now() > deadline) return report;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Live (non-zombie) members of a process group. */
export function processGroupMembers(pgid: number): number[] {
  return processes()
    .filter((process) => process.pgrp === pgid)
    .map((process) => process.pid);
}

/** Waits until no live process is left in a process group; false when some still are after the time. */
export async function waitForProcessGroupExit(pgid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (processGroupMembers(pgid).length > 0) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return true;
}

/** `.partial` files and `.vmlb` folders under a folder; does not descend into `.vmlb` (it may hold mounts). */
function strayFiles(dir: string): { partialFiles: string[]; workFolders: string[] } {
  const partialFiles: string[] = [];
  const workFolders: string[] = [];
  const walk = (folder: string) => {
    let entries;
    try {
      entries = readdirSync(folder, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const full = path.join(folder, entry.name);
      // Blob mode keeps which blob each dist/ file is in .vmlb/placed: not a build's work folder.
      if (entry.name === '.vmlb') {
        if (readdirSync(full).some((name) => name !== 'placed')) workFolders.push(full);
      } else if (entry.name.endsWith('.partial')) partialFiles.push(full);
      else if (entry.isDirectory()) walk(full);
    }
  };
  walk(dir);
  return { partialFiles: partialFiles.sort(), workFolders: workFolders.sort() };
}

export async function findLeftovers(root: string, options: LeftoverOptions = {}): Promise<HostLeftovers> {
  const ignored = new Set(options.ignoreMounts ?? []);
  return {
    mounts: mountsUnder(root).filter(({ mountPoint }) => !ignored.has(mountPoint)),
    loopDevices: await loopDevicesUnder(root, options.suspectLoops),
    processes: diskProcessesUnder(root),
    ...strayFiles(options.distDir ?? path.join(root, 'dist')),
  };
}

/** One line per leftover; empty when the host is clean (so `expect(...).toBe('')` shows them all on failure). */
export function describeLeftovers(leftovers: HostLeftovers): string {
  return [
    ...leftovers.mounts.map(({ mountPoint, fsType }) => `mount: ${mountPoint} (${fsType})`),
    ...leftovers.loopDevices.map(({ name, backFile }) => `loop device: ${name} on ${backFile || '(no file)'}`),
    ...leftovers.processes.map(({ pid, commandLine }) => `process ${pid}: ${commandLine}`),
    ...leftovers.partialFiles.map((file) => `partial file: ${file}`),
    ...leftovers.workFolders.map((folder) => `work folder: ${folder}`),
  ].join('\n');
}

async function unmount(mountPoint: string): Promise<void> {
  const result = await execa('umount', [mountPoint], { reject: false });
  if (result.exitCode !== 0 && mountsUnder(mountPoint).some((mount) => mount.mountPoint === mountPoint)) {
    await execa('umount', ['--lazy', mountPoint], { reject: false });
  }
}

/**
 * Test teardown only: releases whatever `findLeftovers` reports (a failed
 * test must not leave the machine dirty, nor break the tests after it), in
 * the order a teardown must go: filesystems, loop devices (stacked ones
 * first), daemons (by PID, SIGTERM then SIGKILL), FUSE exports, files.
 * Returns what it released.
 */
export async function releaseHostLeftovers(root: string, options: LeftoverOptions = {}): Promise<string[]> {
  const leftovers = await findLeftovers(root, options);
  const released: string[] = [];
  for (const { mountPoint, fsType } of leftovers.mounts) {
    if (fsType.startsWith('fuse')) continue;
    await unmount(mountPoint);
    released.push(`unmounted ${mountPoint}`);
  }
  // Stacked loops were found after the ones they sit on: detach in reverse.
  for (const { name } of [...leftovers.loopDevices].reverse()) {
    await execa('losetup', ['--detach', name], { reject: false });
    released.push(`detached ${name}`);
  }
  for (const { pid } of leftovers.processes) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      continue;
    }
    const deadline = Date.now() + 10_000;
    while (processes().some((candidate) => candidate.pid === pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // it stopped on SIGTERM
    }
    released.push(`stopped process ${pid}`);
  }
  for (const { mountPoint } of mountsUnder(root).filter(({ mountPoint }) => !(options.ignoreMounts ?? []).includes(mountPoint))) {
    await unmount(mountPoint);
    released.push(`unmounted ${mountPoint}`);
  }
  for (const file of [...leftovers.partialFiles, ...leftovers.workFolders]) {
    // Never recurse into a folder that still has something mounted in it.
    if (mountsUnder(file).length === 0 && existsSync(file)) {
      rmSync(file, { recursive: true, force: true });
      released.push(`removed ${file}`);
    }
  }
  return released;
}

/** Live processes with `text` as one of their arguments (a marker a test script gave them), with their command line. */
export function processesWithArgument(text: string): Array<{ pid: number; commandLine: string }> {
  return processes()
    .filter(({ argv }) => argv.includes(text))
    .map(({ pid, argv }) => ({ pid, commandLine: argv.join(' ') }));
}

/**
 * Every entry under a folder, with its type, mode, owner, size, link target
 * and a sha256 of its content, one line each: equal strings mean nothing
 * in the folder was added, removed, replaced or changed (mtimes aside).
 */
export function folderFingerprint(dir: string): string {
  const lines: string[] = [];
  const walk = (folder: string) => {
    for (const name of readdirSync(folder).sort()) {
      const full = path.join(folder, name);
      const stat = lstatSync(full);
      const relative = path.relative(dir, full);
      const meta = `${(stat.mode & 0o170000).toString(8)} ${(stat.mode & 0o7777).toString(8)} ${stat.uid}:${stat.gid}`;
      if (stat.isSymbolicLink()) lines.push(`${relative} link ${meta} -> ${readlinkSync(full)}`);
      else if (stat.isDirectory()) {
        lines.push(`${relative}/ ${meta}`);
        walk(full);
      } else lines.push(`${relative} ${meta} ${stat.size} ${createHash('sha256').update(readFileSync(full)).digest('hex')}`);
    }
  };
  walk(dir);
  return lines.join('\n');
}
