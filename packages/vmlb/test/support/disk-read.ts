import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';

/**
 * Reads files out of a qcow2 (chain) without mounting it: the disk is
 * converted to a temporary raw file, the root partition located with
 * sfdisk, and debugfs reads the ext4 filesystem at that offset.
 */
export async function readFilesFromImage(qcow2: string, files: string[]): Promise<Record<string, string>> {
  const dir = mkdtempSync(path.join(tmpdir(), 'vmlb-read-'));
  try {
    const raw = path.join(dir, 'disk.raw');
    await execa('qemu-img', ['convert', '-U', '-O', 'raw', qcow2, raw]);
    const { stdout: table } = await execa('sfdisk', ['--json', raw]);
    const partition = JSON.parse(table).partitiontable.partitions[0] as { start: number; size: number };
    const fs = path.join(dir, 'root.ext4');
    await execa('dd', [`if=${raw}`, `of=${fs}`, 'bs=512', `skip=${partition.start}`, `count=${partition.size}`, 'status=none']);
    const result: Record<string, string> = {};
    for (const file of files) {
      const { stdout, exitCode } = await execa('debugfs', ['-R', `cat ${file}`, fs], { reject: false, stderr: 'ignore' });
      result[file] = exitCode === 0 ? stdout : '<unreadable>';
    }
    return result;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
