import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { PARTITION_HELPER_TEXT } from './disk-rewrite';

/**
 * The function an imported modify-disk reaches partitions with, run for
 * real: a two-partition disk on a loop device, as vmlb's device is one.
 */
describe('vmlb_partition, written into imported modify-disk scripts', () => {
  let dir: string;
  let disk: string;
  const attached: string[] = [];

  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'vmlb-partition-'));
    const file = path.join(dir, 'disk.raw');
    writeFileSync(file, '');
    execFileSync('truncate', ['-s', '16M', file]);
    execFileSync('sfdisk', ['--quiet', file], { input: 'label: dos\nstart=2048, size=8192, type=83\nstart=12288, size=4096, type=83\n' });
    disk = execFileSync('losetup', ['--find', '--show', file], { encoding: 'utf8' }).trim();
    attached.push(disk);
  });
  afterAll(() => {
    for (const device of attached.reverse()) spawnSync('losetup', ['-d', device]);
    rmSync(dir, { recursive: true, force: true });
  });

  const call = (shell: string, number: number) =>
    spawnSync(shell, ['-c', `set -eu\n${PARTITION_HELPER_TEXT}\nvmlb_partition "$0" ${number}`, disk], { encoding: 'utf8' });

  it.each(['sh', 'bash'])('under %s, attaches partition 2 (not 1) at its offset and size', (shell) => {
    const run = call(shell, 2);
    expect([run.status, run.stderr]).toEqual([0, '']);
    const partition = run.stdout.trim();
    attached.push(partition);
    expect(partition).toMatch(/^\/dev\/loop[0-9]+$/);
    const [offset, sizelimit] = execFileSync('losetup', ['--noheadings', '--raw', '--output', 'OFFSET,SIZELIMIT', partition], { encoding: 'utf8' })
      .trim()
      .split(' ');
    expect([Number(offset), Number(sizelimit)]).toEqual([12288 * 512, 4096 * 512]);
  });

  it('fails, naming the disk and the number, for a partition the table does not have', () => {
    const run = call('sh', 3);
    expect(run.status).toBe(1);
    expect(run.stderr).toBe(`${disk} has no partition 3\n`);
    expect(run.stdout).toBe('');
  });
});
