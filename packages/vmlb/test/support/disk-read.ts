import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';

/**
 * Runs `read` on the root filesystem of a qcow2 (chain) without mounting
 * it: the disk is converted to a temporary raw file, the partition (default
 * the first) located with sfdisk and copied out, and `read` gets that ext4
 * file (for debugfs).
 */
async function withRootFilesystem<T>(qcow2: string, read: (fs: string) => Promise<T>, partitionNumber = 1): Promise<T> {
  const dir = mkdtempSync(path.join(tmpdir(), 'vmlb-read-'));
  try {
    const raw = path.join(dir, 'disk.raw');
    await execa('qemu-img', ['convert', '-U', '-O', 'raw', qcow2, raw]);
    const { stdout: table } = await execa('sfdisk', ['--json', raw]);
    const partition = JSON.parse(table).partitiontable.partitions[partitionNumber - 1] as { start: number; size: number };
    const fs = path.join(dir, 'root.ext4');
    await execa('dd', [`if=${raw}`, `of=${fs}`, 'bs=512', `skip=${partition.start}`, `count=${partition.size}`, 'status=none']);
    return await read(fs);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The contents of files in a qcow2 (chain), read with debugfs; `<unreadable>` for a file that is not there. `partition`: another than the first. */
export async function readFilesFromImage(qcow2: string, files: string[], partition = 1): Promise<Record<string, string>> {
  return withRootFilesystem(
    qcow2,
    async (fs) => {
      const result: Record<string, string> = {};
      for (const file of files) {
        const { stdout, exitCode } = await execa('debugfs', ['-R', `cat ${file}`, fs], { reject: false, stderr: 'ignore' });
        result[file] = exitCode === 0 ? stdout : '<unreadable>';
      }
      return result;
    },
    partition,
  );
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

/** The size of a qcow2 (chain)'s first partition and of the ext4 filesystem in it, in bytes (the filesystem's from dumpe2fs). */
export async function rootPartitionAndFilesystem(qcow2: string): Promise<{ partition: number; filesystem: number }> {
  return withRootFilesystem(qcow2, async (fs) => {
    const { stdout } = await execa('dumpe2fs', ['-h', fs], { stderr: 'ignore' });
    const field = (name: string) => {
      const match = new RegExp(`^${name}:\\s+([0-9]+)$`, 'm').exec(stdout);
      if (!match) throw new Error(`dumpe2fs printed no '${name}' for the first partition of ${qcow2}:\n${stdout}`);
      return Number(match[1]);
    };
    return { partition: statSync(fs).size, filesystem: field('Block count') * field('Block size') };
  });
}

/** The names in a folder of a qcow2 (chain)'s root filesystem, read with debugfs; undefined when there is no such folder. */
export async function folderEntriesInImage(qcow2: string, folder: string): Promise<string[] | undefined> {
  return withRootFilesystem(qcow2, async (fs) => {
    const { stdout, stderr } = await execa('debugfs', ['-R', `ls -p ${folder}`, fs], { reject: false });
    if (/File not found|not a directory/i.test(stderr) || !stdout.trim()) return undefined;
    // `ls -p`: /inode/mode/uid/gid/name/size/ per entry.
    return stdout
      .split('\n')
      .map((line) => line.split('/')[5])
      .filter((name): name is string => name !== undefined && name !== '.' && name !== '..')
      .sort();
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
