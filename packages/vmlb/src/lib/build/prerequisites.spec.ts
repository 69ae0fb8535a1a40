import { checkPrerequisites, findOnPath, layerBuildTools, type HostFacts } from './prerequisites';

const host = (overrides: Partial<HostFacts> = {}): HostFacts => ({
  uid: 0,
  hasFuse: true,
  hasLoopControl: true,
  which: (command) => `/usr/bin/${command}`,
  ...overrides,
});

describe('checkPrerequisites', () => {
  it('passes on a complete host', () => {
    expect(() => checkPrerequisites(layerBuildTools(false), { fuse: true }, host())).not.toThrow();
  });

  it('lists everything missing at once, with the install command', () => {
    const bare = host({ uid: 1000, hasFuse: false, which: (command) => (command.startsWith('qemu') ? undefined : `/bin/${command}`) });
    expect(() => checkPrerequisites(layerBuildTools(false), { fuse: true }, bare)).toThrow(
      [
        'cannot build on this host; missing:',
        '  - root: vmlb attaches disks, mounts filesystems and runs chroots; run it as root (e.g. sudo npx nx ...).',
        '  - qemu-img (Debian/Ubuntu package qemu-utils)',
        '  - qemu-storage-daemon (Debian/Ubuntu package qemu-system-common)',
        '  - /dev/fuse (a character device): load the fuse module (modprobe fuse); in a container, pass the device in (docker run --device /dev/fuse); or pass --nbd /dev/nbd0 on a host with the nbd module.',
        'Install with: apt-get install -y qemu-utils qemu-system-common   (Fedora: dnf install -y qemu-img qemu-storage-daemon)',
      ].join('\n'),
    );
  });

  it('needs qemu-nbd, not the FUSE export, with --nbd', () => {
    expect(layerBuildTools(true)).toContain('qemu-nbd');
    expect(layerBuildTools(true)).not.toContain('qemu-storage-daemon');
    expect(() => checkPrerequisites(layerBuildTools(true), { fuse: false }, host({ hasFuse: false }))).not.toThrow();
  });

  it('asks for neither root nor loop devices when no disk is attached', () => {
    expect(() => checkPrerequisites(['qemu-img'], { fuse: false, disks: false }, host({ uid: 1000, hasLoopControl: false }))).not.toThrow();
  });

  it('finds real commands on this host', () => {
    expect(findOnPath('sh')).toMatch(/\/sh$/);
    expect(findOnPath('vmlb-no-such-tool')).toBeUndefined();
  });
});
