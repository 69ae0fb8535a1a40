import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';
import { readFilesFromImage } from './support/disk-read';
import { describeLeftovers, findLeftovers } from './support/host-state';
import { NxWorkspace } from './support/nx-workspace';

/** The bytes of a qcow2 chain at `offset`, read through a raw copy (qemu-img's own reading, not vmlb's). */
async function bytesAt(qcow2: string, offset: number, length: number): Promise<string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'vmlb-raw-'));
  try {
    await execa('qemu-img', ['convert', '-O', 'raw', qcow2, path.join(dir, 'disk.raw')]);
    return readFileSync(path.join(dir, 'disk.raw'))
      .subarray(offset, offset + length)
      .toString('latin1');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * `# disk-devices`, what bootloaders need: the image's disk and partitions
 * as block devices in the build's sandbox, with / mounted from its
 * partition's device, so that a tool probing / finds the disk it is on
 * (images/grub-boot runs grub-install and update-grub on it, in the e2e).
 */
describe('a build-layer with # disk-devices', () => {
  let workspace: NxWorkspace;
  beforeAll(() => {
    workspace = new NxWorkspace({ images: ['tiny'] });
    workspace.script(
      'images/tiny/15_boot/build-layer',
      '# disk-devices',
      '[ -b /dev/vmlb-disk ] && [ -b /dev/vmlb-disk1 ]',
      // The source of the / mount, as a bootloader reads it from mountinfo, is a device of this sandbox, the one behind /dev/vmlb-disk1.
      `root_source=$(awk '$5 == "/" { for (i = 7; i <= NF; i++) if ($i == "-") { print $(i + 2); exit } }' /proc/self/mountinfo)`,
      '[ -b "$root_source" ] && [ "$(readlink -f /dev/vmlb-disk1)" = "$root_source" ]',
      'echo "root on $(basename "$root_source"), disk $(readlink /dev/vmlb-disk)" > /etc/disk-devices',
      // The boot gap between the MBR and the first partition, where GRUB embeds its core image.
      "printf 'VMLB-MBR-GAP' | dd of=/dev/vmlb-disk bs=1 seek=1024 conv=notrunc 2>/dev/null",
    );
    workspace.script('images/tiny/20_motd/build-layer', 'if [ -e /dev/vmlb-disk ]; then echo exposed; else echo absent; fi > /etc/disk-devices-above');
  });
  afterAll(() => workspace.remove());

  it('gives the script the disk and its partitions, / on its partition device, and keeps what it wrote outside the filesystem', async () => {
    await workspace.nxOk(['build', 'image-tiny']);
    const layer = workspace.path('dist/images/tiny/15_boot.qcow2');
    const files = await readFilesFromImage(layer, ['/etc/disk-devices']);
    expect(files['/etc/disk-devices']).toMatch(/^root on (loop\d+)p1, disk \1$/);
    expect(await bytesAt(layer, 1024, 12)).toBe('VMLB-MBR-GAP');
    expect(await readFilesFromImage(workspace.path('dist/images/tiny/image.qcow2'), ['/etc/disk-devices-above'])).toEqual({
      '/etc/disk-devices-above': 'absent',
    });
    expect(describeLeftovers(await findLeftovers(workspace.root, { distDir: workspace.path('dist') }))).toBe('');
  });
});
