import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';

/**
 * Runs `read` on the root filesystem of a qcow2 (chain) without mounting
 * it: the disk is converted to a temporary raw file, the first partition
 * located with sfdisk and copied out, and `read` gets that ext4 file (for
 * debugfs).
 */
async function withRootFilesystem<T>(qcow2: string, read: (fs: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(path.join(tmpdir(), 'vmlb-read-'));
  try {
    const raw = path.join(dir, 'disk.raw');
    await execa('qemu-img', ['convert', '-U', '-O', 'raw', qcow2, raw]);
    const { stdout: table } = await execa('sfdisk', ['--json', raw]);
    const partition = JSON.parse(table).partitiontable.partitions[0] as { start: number; size: number };
    const fs = path.join(dir, 'root.ext4');
    await execa('dd', [`if=${raw}`, `of=${fs}`, 'bs=512', `skip=${partition.start}`, `count=${partition.size}`, 'status=none']);
    return await read(fs);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The contents of files in a qcow2 (chain), read with debugfs; `<unreadable>` for a file that is not there. */
export async function readFilesFromImage(qcow2: string, files: string[]): Promise<Record<string, string>> {
  return withRootFilesystem(qcow2, async (fs) => {
    const result: Record<string, string> = {};
    for (const file of files) {
      const { stdout, exitCode } = await execa('debugfs', ['-R', `cat ${file}`, fs], { reject: false, stderr: 'ignore' });
      result[file] = exitCode === 0 ? stdout : '<unreadable>';
    }
    return result;
  });
}

/** The access, change and modification times of a file in a qcow2 (chain), as debugfs prints them (`0x65a1b2c3:12345678 -- <date>`). */
export async function fileTimesInImage(qcow2: string, file: string): Promise<{ atime: string; ctime: string; mtime: string }> {
  return withRootFilesystem(qcow2, async (fs) => {
    const { stdout } = await execa('debugfs', ['-R', `stat ${file}`, fs], { stderr: 'ignore' });
    const time = (name: string) => {
      const match = new RegExp(`^ ?${name}: (.+)$`, 'm').exec(stdout);
      if (!match) throw new Error(`debugfs printed no ${name} for ${file} in ${qcow2}:\n${stdout}`);
      return match[1];
    };
    return { atime: time('atime'), ctime: time('ctime'), mtime: time('mtime') };
  });
}

/** Whether each path exists in a qcow2 (chain), by debugfs (whose `cat` prints nothing, and exits 0, for a missing file). */
export async function pathsInImage(qcow2: string, paths: string[]): Promise<Record<string, boolean>> {
  return withRootFilesystem(qcow2, async (fs) => {
    const result: Record<string, boolean> = {};
    for (const file of paths) {
      const { stderr } = await execa('debugfs', ['-R', `stat ${file}`, fs], { reject: false });
      result[file] = !/File not found/.test(stderr);
    }
    return result;
  });
}
