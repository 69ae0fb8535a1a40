import { writeFileSync } from 'node:fs';
import { readFilesFromImage } from './support/disk-read';
import { describeLeftovers, findLeftovers } from './support/host-state';
import { tearDownHost } from './support/host-teardown';
import { NxWorkspace, cacheHits, tasksRun } from './support/nx-workspace';

/** A blank disk made into a root partition (busybox) and a second, empty ext4 partition. */
const TWO_PARTITIONS = `#!/bin/bash
set -euo pipefail
device="$3"
printf 'label: dos\\nstart=2048, size=40M, type=83, bootable\\ntype=83\\n' | sfdisk --quiet --no-reread "$device"
parts=$(sfdisk --dump "$device" | sed -n 's/.*start= *\\([0-9]*\\), size= *\\([0-9]*\\).*/\\1 \\2/p')
attach() { losetup --find --show --offset $(($1 * 512)) --sizelimit $(($2 * 512)) "$device"; }
root=$(attach $(echo "$parts" | sed -n 1p))
boot=$(attach $(echo "$parts" | sed -n 2p))
dir=$(mktemp -d)
cleanup() { umount "$dir" 2>/dev/null || true; rmdir "$dir"; losetup -d "$root" "$boot"; }
trap cleanup EXIT
mkfs.ext4 -q -F -L boot -E lazy_itable_init=0,lazy_journal_init=0 "$boot"
mkfs.ext4 -q -F -L root -E lazy_itable_init=0,lazy_journal_init=0 "$root"
mount "$root" "$dir"
mkdir -p "$dir"/{bin,etc,proc,sys,dev,tmp,root,mnt,boot}
cp /bin/busybox "$dir/bin/busybox"
for applet in $("$dir/bin/busybox" --list); do [ -e "$dir/bin/$applet" ] || ln -s busybox "$dir/bin/$applet"; done
`;

/**
 * Layer scripts written for vm-layer-builder, built as they are: a hint
 * followed by a comment (its own 20_another/build-layer says
 * `# nocache (this hint tells vm-layer-builder to not cache the layer)`)
 * and a partition named as a suffix of its device (`p2`).
 */
describe("vm-layer-builder's hint syntax", () => {
  let workspace: NxWorkspace;
  const top = () => workspace.path('dist/images/tiny/image.qcow2');

  beforeAll(() => {
    workspace = new NxWorkspace({ images: ['tiny'] });
    // images/tiny with a second partition on its disk, for /boot.
    writeFileSync(workspace.path('images/tiny/image.json'), JSON.stringify({ base: { empty: '64M' }, rootPartition: 1 }));
    writeFileSync(workspace.path('images/tiny/00_disk/modify-disk'), TWO_PARTITIONS, { mode: 0o755 });
    workspace.script('images/tiny/30_boot/build-layer', '# chroot-mount p2 /boot', 'echo "kernel goes here" > /boot/marker');
    workspace.script(
      'images/tiny/40_another/build-layer',
      '# nocache (this hint tells vm-layer-builder to not cache the layer)',
      "head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' > /afile2",
    );
  });

  afterEach(async () => {
    await tearDownHost(workspace);
  }, 60_000);
  afterAll(() => workspace.remove());

  it('builds a layer with `# nocache (comment)` on every run and `# chroot-mount p2 /boot` on partition 2', async () => {
    const first = await workspace.nxOk(['build', 'image-tiny']);
    expect(tasksRun(first)).toEqual([
      'image-tiny:base',
      'image-tiny:build',
      'tiny-00_disk:build',
      'tiny-10_hello:build',
      'tiny-20_motd:build',
      'tiny-30_boot:build',
      'tiny-40_another:build',
    ]);
    expect(await readFilesFromImage(top(), ['/marker'], 2)).toEqual({ '/marker': 'kernel goes here' });
    // Partition 2 held it, not the root filesystem's /boot folder (debugfs prints nothing for a file that is not there).
    expect(await readFilesFromImage(top(), ['/boot/marker', '/etc/motd'])).toEqual({
      '/boot/marker': '',
      '/etc/motd': 'Welcome to tiny, built by vmlb.',
    });
    const built = (await readFilesFromImage(top(), ['/afile2']))['/afile2'];
    expect(built).toMatch(/^[0-9a-f]{32}$/);

    const second = await workspace.nxOk(['build', 'image-tiny']);
    expect(tasksRun(second)).toEqual(['image-tiny:build', 'tiny-40_another:build']);
    expect(cacheHits(second)).toEqual(['image-tiny:base', 'tiny-00_disk:build', 'tiny-10_hello:build', 'tiny-20_motd:build', 'tiny-30_boot:build']);
    expect((await readFilesFromImage(top(), ['/afile2']))['/afile2']).not.toBe(built);
    expect(await workspace.nxOk(['run', 'image-tiny:layers'])).toMatch(/30_boot\s+build-layer\s+chroot-mount 2 \/boot/);
  });

  it('still refuses words after the arguments that do not start a comment, naming the script, the line and the rule', async () => {
    workspace.script('images/tiny/30_boot/build-layer', '# chroot-mount p2 /boot for the kernel', 'echo never');
    const run = await workspace.nx(['build', 'image-tiny']);
    expect(run.exitCode).not.toBe(0);
    expect(run.output).toContain(
      "images/tiny/30_boot/build-layer:3: 'chroot-mount' takes a partition number and a target, got 5 arguments ('p2 /boot for the kernel'); " +
        'text after the arguments is a comment only when it starts with ( or #',
    );
    expect(tasksRun(run.output)).toEqual([]);
    expect(describeLeftovers(await findLeftovers(workspace.root))).toBe('');
  });
});
