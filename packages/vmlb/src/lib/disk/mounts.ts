import { readFileSync, statSync } from 'node:fs';
import { run } from '../util/exec';

/** Mount points currently mounted in this mount namespace, as listed by the kernel. */
export function listMountPoints(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => decodeMountPath(line.split(' ')[4]));
}

/** Mount points at or below a folder, deepest first (the order to unmount them in). */
export function mountsUnder(dir: string): string[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return listMountPoints()
    .filter((mountPoint) => mountPoint === dir || mountPoint.startsWith(prefix))
    .sort((a, b) => b.length - a.length);
}

export function isMounted(mountPoint: string): boolean {
  return listMountPoints().includes(mountPoint);
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function decodeMountPath(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_match, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/**
 * Unmounts a mount point. A busy or dead (FUSE endpoint gone) mount falls
 * back to a lazy unmount, which detaches it now and frees it when the last
 * user lets go: a teardown must never stop half-way.
 */
export async function unmount(mountPoint: string): Promise<void> {
  if (!isMounted(mountPoint)) return;
  const result = await run('umount', [mountPoint], { reject: false });
  if (result.exitCode !== 0 && isMounted(mountPoint)) {
    await run('umount', ['--lazy', mountPoint], { reject: false });
  }
}

/** A loop device as `losetup --list --json` reports it. */
export interface LoopDevice {
  name: string;
  backFile: string;
  /** Inode and `major:minor` of the filesystem of the backing file, which identify it when its path no longer resolves. */
  backIno?: number;
  backDevice?: string;
}

export async function listLoopDevices(): Promise<LoopDevice[]> {
  const { stdout } = await run('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE,BACK-INO,BACK-MAJ:MIN'], { reject: false });
  if (!stdout.trim()) return [];
  const parsed = JSON.parse(stdout) as {
    loopdevices?: Array<{ name: string; 'back-file': string | null; 'back-ino'?: number | string | null; 'back-maj:min'?: string | null }>;
  };
  return (parsed.loopdevices ?? []).map((device) => ({
    name: device.name,
    // losetup appends " (deleted)" when the backing file is gone.
    backFile: (device['back-file'] ?? '').replace(/ \(deleted\)$/, ''),
    backIno: device['back-ino'] === null || device['back-ino'] === undefined ? undefined : Number(device['back-ino']),
    backDevice: device['back-maj:min']?.trim() || undefined,
  }));
}

/** `major:minor` of a device number as Node's stat reports it (glibc's encoding). */
function majorMinor(dev: number): string {
  const value = BigInt(dev);
  const major = ((value >> 8n) & 0xfffn) | ((value >> 32n) & 0xfffff000n);
  const minor = (value & 0xffn) | ((value >> 12n) & 0xffffff00n);
  return `${major}:${minor}`;
}

/**
 * Loop devices attached on top of `devices` (a loop device whose backing
 * file is one of them), directly or through others, outermost first: the
 * order to detach them in. A modify-disk script that attaches a partition
 * of the disk it was given leaves one when it fails or is killed; it keeps
 * the device below busy, so that one cannot be detached either. Matched by
 * the device node's inode: the path losetup shows for such a backing file
 * is that of the script's mount namespace (`/loop0`), not `/dev/loop0`.
 */
export async function loopsStackedOn(devices: readonly string[], listing?: LoopDevice[]): Promise<string[]> {
  const loops = listing ?? (await listLoopDevices());
  const nodes = new Map<string, { ino: number; device: string }>();
  const nodeOf = (name: string) => {
    if (!nodes.has(name)) {
      try {
        const stat = statSync(name);
        nodes.set(name, { ino: stat.ino, device: majorMinor(stat.dev) });
      } catch {
        return undefined;
      }
    }
    return nodes.get(name);
  };
  const below = new Set(devices);
  const stacked: string[] = [];
  for (let found = true; found;) {
    found = false;
    for (const loop of loops) {
      if (below.has(loop.name)) continue;
      const onOne = [...below].some((device) => {
        if (loop.backFile === device) return true;
        const node = nodeOf(device);
        return node !== undefined && loop.backIno === node.ino && loop.backDevice === node.device;
      });
      if (onOne) {
        below.add(loop.name);
        stacked.unshift(loop.name);
        found = true;
      }
    }
  }
  return stacked;
}

/** Attaches a loop device to a byte range of a file; returns its path. */
export async function attachLoop(
  file: string,
  range?: { offset: number; size: number },
  options: { readOnly?: boolean; partitions?: boolean } = {},
): Promise<string> {
  const args = ['--find', '--show', ...(options.readOnly ? ['--read-only'] : []), ...(options.partitions ? ['--partscan'] : [])];
  if (range) args.push('--offset', String(range.offset), '--sizelimit', String(range.size));
  const { stdout } = await run('losetup', [...args, file]);
  return stdout.trim();
}

export async function detachLoop(device: string): Promise<void> {
  await run('losetup', ['--detach', device], { reject: false });
}
