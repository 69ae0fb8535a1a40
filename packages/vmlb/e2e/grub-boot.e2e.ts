import { readFilesFromImage } from '../test/support/disk-read';
import { NxWorkspace, tasksRun } from '../test/support/nx-workspace';

/**
 * A bootloader installed from build-layers: images/grub-boot runs
 * grub-install and update-grub in 10_grub (# disk-devices), then a kernel
 * upgrade in 20_kernel runs update-grub again through the kernel package's
 * hook, and the image boots through GRUB to a login.
 */
describe('images/grub-boot', () => {
  const workspace = new NxWorkspace({ images: ['grub-boot'] });
  afterAll(() => workspace.remove());

  it('installs GRUB and updates it after a kernel upgrade, in layers, and boots through it to a login', async () => {
    const build = await workspace.nxOk(['build', 'image-grub-boot'], { timeoutMs: 3_000_000 });
    expect(tasksRun(build)).toEqual([
      'grub-boot-00_base:build',
      'grub-boot-10_grub:build',
      'grub-boot-20_kernel:build',
      'image-grub-boot:base',
      'image-grub-boot:build',
    ]);
    const dist = (layer: string) => workspace.path('dist/images/grub-boot', `${layer}.qcow2`);
    const menu = async (layer: string) => (await readFilesFromImage(dist(layer), ['/boot/grub/grub.cfg']))['/boot/grub/grub.cfg'];
    // 10_grub's menu has the first kernel only; 20_kernel's, written by the upgrade's update-grub, both.
    expect(await menu('10_grub')).toMatch(/linux\s+\/boot\/vmlinuz-\S+-amd64 root=UUID=\S+ ro console=ttyS0/);
    expect(await menu('10_grub')).not.toContain('cloud-amd64');
    expect(await menu('20_kernel')).toMatch(/vmlinuz-\S+-cloud-amd64/);
    const boot = await workspace.nxOk(['run', 'image-grub-boot:test-boot', '--check'], { timeoutMs: 1_200_000 });
    expect(boot).toMatch(/image grub-boot booted: \/login:\/ appeared after/);
    // GRUB's own lines on the serial console (qemu may split them; joined here), then the upgraded kernel it boots.
    expect(boot.replace(/[\r\n]/g, '')).toMatch(/Booting `Debian GNU\/Linux'.*Loading Linux \S+-cloud-amd64/);
  });
});
