import { readFileSync } from 'node:fs';
import { run } from './exec';

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
}

export async function listLoopDevices(): Promise<LoopDevice[]> {
  const { stdout } = await run('losetup', ['--list', '--json', '--output', 'NAME,BACK-FILE'], { reject: false });
  if (!stdout.trim()) return [];
  const parsed = JSON.parse(stdout) as { loopdevices?: Array<{ name: string; 'back-file': string | null }> };
  return (parsed.loopdevices ?? []).map((device) => ({
    name: device.name,
    // losetup appends " (deleted)" when the backing file is gone.
    backFile: (device['back-file'] ?? '').replace(/ \(deleted\)$/, ''),
  }));
}

/** Attaches a loop device to a byte range of a file; returns its path. */
export async function attachLoop(file: string, range?: { offset: number; size: number }): Promise<string> {
  const args = ['--find', '--show'];
  if (range) args.push('--offset', String(range.offset), '--sizelimit', String(range.size));
  const { stdout } = await run('losetup', [...args, file]);
  return stdout.trim();
}

export async function detachLoop(device: string): Promise<void> {
  await run('losetup', ['--detach', device], { reject: false });
}
