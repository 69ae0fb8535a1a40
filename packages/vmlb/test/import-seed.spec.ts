import { appendFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';
import { readFilesFromImage, rootPartitionAndFilesystem } from './support/disk-read';
import { findLeftovers } from './support/host-state';
import { NxWorkspace, REPO_ROOT, tasksRun } from './support/nx-workspace';

/** A vm-layer-builder checkout in the shape of the original's example repository (see its README). */
const FIXTURE = path.join(__dirname, 'fixtures/vm-layer-builder');
const MiB = 1024 * 1024;

/**
 * A 64 MiB busybox disk, made the way images/tiny's first layer makes one:
 * its modify-disk script, run on a loop device over a raw file. It stands in
 * for the CentOS cloud image SConstruct names, which this machine cannot
 * download.
 */
async function makeBusyboxDisk(file: string): Promise<void> {
  await execa('truncate', ['-s', '64M', file]);
  const { stdout: loop } = await execa('losetup', ['--find', '--show', file]);
  try {
    await execa(path.join(REPO_ROOT, 'images/tiny/00_disk/modify-disk'), ['/dev/null', file, loop]);
  } finally {
    await execa('losetup', ['-d', loop]);
  }
}

/** The lines of a printed report entry: its place, the line before, and the lines after, as the report prints them. */
function entry(place: string, before: string | undefined, after: string[]): string {
  return [
    `  ${place}`,
    ...(before === undefined ? [] : [`    - ${before}`]),
    ...(after.length ? after.map((line) => `    + ${line}`) : ['    + (removed)']),
  ].join('\n');
}

describe('nx g vmlb:import-seed on a vm-layer-builder checkout', () => {
  let workspace: NxWorkspace;
  let imported: string;
  const image = (file: string) => workspace.path('images/seed', file);
  const dist = (file: string) => workspace.path('dist/images/seed', file);

  beforeAll(async () => {
    workspace = new NxWorkspace();
    mkdirSync(workspace.path('disks'));
    await makeBusyboxDisk(workspace.path('disks/busybox.raw'));
  });
  afterAll(() => workspace.remove());

  it('1. imports the layers, base, seeds and test-boot memory, printing each rewrite and each line it could not convert', async () => {
    imported = await workspace.nxOk(['g', 'vmlb:import-seed', FIXTURE, '--image', 'seed', '--base-path', '../../disks/busybox.raw', '--no-interactive']);

    expect(imported).toContain(`vmlb:import-seed: ${FIXTURE} → images/seed/ (3 layers)`);
    // Each rewrite of 05_resize, 20_another and the seeds, with its line number in the checkout.
    for (const expected of [
      entry('05_resize/modify-disk:14', 'qemu-img create -f qcow2 -b "$source" -o compat=0.10 "$target" 128M', []),
      entry('05_resize/modify-disk:16', 'qemu-nbd --connect="$device" "$target"', []),
      entry('05_resize/modify-disk:18', 'trap "qemu-nbd --disconnect $device" EXIT', []),
      entry('05_resize/modify-disk:20', 'sleep 1', []),
      entry('05_resize/modify-disk:24', 'e2fsck -y -f "${device}p1"', [
        'part1=$(vmlb_partition "$device" 1)',
        `trap 'losetup -d "$part1"' EXIT`,
        'e2fsck -y -f "${part1}"',
      ]),
      entry('05_resize/modify-disk:25', 'resize2fs -f "${device}p1"', ['resize2fs -f "${part1}"']),
      entry('20_another/build-layer:3', '# nocache (this hint tells vm-layer-builder to not cache the layer)', [
        '# nocache',
        '# (this hint tells vm-layer-builder to not cache the layer)',
      ]),
      entry('test-boot/user-data.yaml', undefined, ['test-boot/user-data']),
      entry('test-boot/meta-data.yaml', undefined, ['test-boot/meta-data']),
      entry('bin/test-boot:5', undefined, ['image.json: "testBoot": { "memory": "512M" }']),
    ]) {
      expect(imported).toContain(expected);
    }
    expect(imported).toContain("'# disk-size 128M' at the top of the script makes it 128M.");
    expect(imported).toMatch(/Changed \(11\):/);
    // SConstruct's compat=0.10 becomes image.json's qcow2Compat.
    expect(imported).toMatch(
      /\n {2}SConstruct:31\n {4}- 'qemu-img create -f qcow2 -b \$\{SOURCE\.file\} -o compat=0\.10 \$\{TARGET\.file\} && '\n {4}\+ "qcow2Compat": "0\.10" in image\.json\n/,
    );
    expect(imported).toMatch(/Not converted: [^\n]*\(0\):\n {2}\(none\)\n/);
    expect(imported).toContain(
      `the base is the disk ../../disks/busybox.raw, as given, instead of SConstruct's download http://images.example.invalid/busybox/busybox-64M.qcow2.xz.`,
    );

    expect(JSON.parse(readFileSync(image('image.json'), 'utf8'))).toEqual({
      $schema: '../../node_modules/vmlb/src/schemas/image.schema.json',
      base: { path: '../../disks/busybox.raw' },
      qcow2Compat: '0.10',
      testBoot: { memory: '512M' },
    });
    for (const script of ['05_resize/modify-disk', '10_update/build-layer', '20_another/build-layer']) {
      expect([script, statSync(image(script)).mode & 0o777]).toEqual([script, 0o755]);
    }
    expect(statSync(image('20_another/dir/file')).mode & 0o777).toBe(0o644);
    expect(readFileSync(image('20_another/dir/file'), 'utf8')).toBe(readFileSync(path.join(FIXTURE, '20_another/dir/file'), 'utf8'));
    expect(readFileSync(image('10_update/build-layer'), 'utf8')).toBe(readFileSync(path.join(FIXTURE, '10_update/build-layer'), 'utf8'));
    expect(readFileSync(image('test-boot/user-data'), 'utf8')).toBe(readFileSync(path.join(FIXTURE, 'test-boot/user-data.yaml'), 'utf8'));
    expect(readFileSync(image('test-boot/meta-data'), 'utf8')).toBe(readFileSync(path.join(FIXTURE, 'test-boot/meta-data.yaml'), 'utf8'));
    const resize = readFileSync(image('05_resize/modify-disk'), 'utf8');
    expect(resize.split('\n').slice(0, 2)).toEqual(['#!/bin/bash', '# disk-size 128M']);
    expect(resize).not.toMatch(/qemu-img|qemu-nbd|sleep|\$\{device\}p1/);
  });

  it("2. builds for real: 05_resize's layer is 128M with partition 1 and its ext4 grown, 20_another's files from dir/ are in the image, and nothing is left attached", async () => {
    const output = await workspace.nxOk(['build', 'image-seed']);
    expect(tasksRun(output)).toEqual(['image-seed:base', 'image-seed:build', 'seed-05_resize:build', 'seed-10_update:build', 'seed-20_another:build']);

    const virtualSize = async (file: string) => JSON.parse((await execa('qemu-img', ['info', '-U', '--output=json', dist(file)])).stdout)['virtual-size'];
    expect(await virtualSize('base.qcow2')).toBe(64 * MiB);
    expect(await virtualSize('05_resize.qcow2')).toBe(128 * MiB);
    // Every layer at the compat level SConstruct asked for.
    for (const file of ['base.qcow2', '05_resize.qcow2', '10_update.qcow2', '20_another.qcow2']) {
      const info = JSON.parse((await execa('qemu-img', ['info', '-U', '--output=json', dist(file)])).stdout);
      expect([file, info['format-specific'].data.compat]).toEqual([file, '0.10']);
    }

    const before = await rootPartitionAndFilesystem(dist('base.qcow2'));
    const after = await rootPartitionAndFilesystem(dist('05_resize.qcow2'));
    // tiny's partition starts at 1 MiB and fills its 64M disk; growpart takes it to (almost: it keeps a few
    // sectors free) the end of the 128M disk, and resize2fs the filesystem to the partition.
    expect(before).toEqual({ partition: 63 * MiB, filesystem: 63 * MiB });
    expect(after.partition).toBeGreaterThan(126 * MiB);
    expect(after.partition).toBeLessThanOrEqual(127 * MiB);
    expect(after.filesystem).toBeLessThanOrEqual(after.partition);
    expect(after.filesystem).toBeGreaterThan(after.partition - 4096);

    expect(await readFilesFromImage(dist('image.qcow2'), ['/dir/file', '/etc/from-bind-mount', '/afile2', '/var/log/update.log'])).toEqual({
      '/dir/file': 'a file in 20_another/dir',
      '/etc/from-bind-mount': 'a file in 20_another/dir',
      '/afile2': '',
      '/var/log/update.log': 'update: nothing to upgrade',
    });
    // Nothing of the build is left mounted, attached or running.
    const leftovers = await findLeftovers(workspace.root);
    expect(leftovers).toMatchObject({ mounts: [], loopDevices: [], processes: [] });
  });

  it('3. leaves a line it cannot convert in the script under a vmlb-import note, disables a hint vmlb would refuse, and lists both with the fix', async () => {
    const checkout = mkdtempSync(path.join(tmpdir(), 'vmlb-seed-'));
    try {
      cpSync(FIXTURE, checkout, { recursive: true });
      appendFileSync(path.join(checkout, '05_resize/modify-disk'), 'kpartx -a "$device"\n');
      const another = path.join(checkout, '20_another/build-layer');
      writeFileSync(
        another,
        readFileSync(another, 'utf8').replace('# chroot-bind-mount dir /opt/dir', '# chroot-bind-mount dir /opt/dir\n# chroot-mount boot /boot'),
      );
      appendFileSync(another, 'mount -t tmpfs tmpfs /var/cache\n');

      const output = await workspace.nxOk(['g', 'vmlb:import-seed', checkout, '--image', 'left', '--base-path', '../../disks/busybox.raw', '--no-interactive']);
      expect(output).toMatch(/Not converted: [^\n]*\(3\):/);
      expect(output).toContain(
        `  05_resize/modify-disk:26\n    - kpartx -a "$device"\n    fix: vmlb's device has no partition nodes: attach a partition with losetup --offset/--sizelimit`,
      );
      expect(output).toContain(
        `  20_another/build-layer:5\n    - # chroot-mount boot /boot\n    fix: '# chroot-mount boot /boot': 'boot' is neither a partition (p1, p2, ...) nor a file or folder of 20_another/, which the original's older chroot-mount bound.`,
      );
      expect(output).toContain(
        `  20_another/build-layer:11\n    - mount -t tmpfs tmpfs /var/cache\n    fix: vmlb runs build-layer in a sandbox that cannot mount`,
      );
      expect(output).toContain(`3 things left to do: grep -rn 'vmlb-import:' images/left lists those in the scripts.`);

      const resize = readFileSync(workspace.path('images/left/05_resize/modify-disk'), 'utf8');
      expect(resize).toMatch(/\n# vmlb-import: vmlb's device has no partition nodes[^\n]*\nkpartx -a "\$device"\n$/);
      const script = readFileSync(workspace.path('images/left/20_another/build-layer'), 'utf8');
      expect(script).toMatch(/\n# vmlb-import: '# chroot-mount boot \/boot'[^\n]*\n# # chroot-mount boot \/boot\n/);
      expect(script).toMatch(/\n# vmlb-import: vmlb runs build-layer in a sandbox[^\n]*\nmount -t tmpfs tmpfs \/var\/cache\n$/);
      // The workspace is still readable: the disabled hint does not stop Nx.
      await workspace.nxOk(['show', 'project', 'left-20_another', '--json']);
    } finally {
      rmSync(checkout, { recursive: true, force: true });
      rmSync(workspace.path('images/left'), { recursive: true, force: true });
    }
  });

  it('4. stops before writing anything when SConstruct names only an MD5, printing the command that computes the SHA-256', async () => {
    const run = await workspace.nx(['g', 'vmlb:import-seed', FIXTURE, '--image', 'nodigest', '--no-interactive']);
    expect(run.exitCode).not.toBe(0);
    expect(run.output).toContain(
      `${FIXTURE}/SConstruct:10 downloads the base http://images.example.invalid/busybox/busybox-64M.qcow2.xz and checks the MD5 of the decompressed file (9b2c4e0d1e6f3a5b7c8d9e0f1a2b3c4d)`,
    );
    expect(run.output).toContain(
      `  curl -fsSL 'http://images.example.invalid/busybox/busybox-64M.qcow2.xz' -o /tmp/busybox-64M.qcow2.xz && sha256sum /tmp/busybox-64M.qcow2.xz && xz -dc /tmp/busybox-64M.qcow2.xz | md5sum`,
    );
    expect(run.output).toContain('then run the import again with --sha256 <the SHA-256 it printed>. Or use a disk you have: --base-path <file>.');
    expect(() => statSync(workspace.path('images/nodigest'))).toThrow();
  });
});
