import { TempWorkspace } from '../../testing/temp-workspace';
import { diskFormat, qemuArguments } from '../../lib/boot/qemu-boot';
import { normalizeOptions } from './executor';

describe('test-boot options', () => {
  const workspace = new TempWorkspace();
  workspace.write('dist/images/demo/20_top.qcow2', 'disk');
  afterAll(() => workspace.remove());
  const base = { imageName: 'demo', chain: 'dist/images/demo/20_top.qcow2' };
  const terminal = { stdinIsTTY: true, ci: false };

  it('is interactive only with a keyboard and outside CI', () => {
    expect(normalizeOptions(base, workspace.root, terminal).check).toBe(false);
    expect(normalizeOptions(base, workspace.root, { stdinIsTTY: false, ci: false }).check).toBe(true);
    expect(normalizeOptions(base, workspace.root, { stdinIsTTY: true, ci: true }).check).toBe(true);
    expect(normalizeOptions({ ...base, check: true }, workspace.root, terminal).check).toBe(true);
  });

  it('defaults to a login prompt within 300 s, 1G and 2 CPUs, and keeps the console log beside the chain', () => {
    expect(normalizeOptions(base, workspace.root, terminal)).toMatchObject({
      expect: /login:/,
      timeoutMs: 300_000,
      memory: '1G',
      cpus: 2,
      sshPort: 0,
      disk: `${workspace.root}/dist/images/demo/20_top.qcow2`,
      logFile: `${workspace.root}/dist/images/demo/test-boot.log`,
    });
  });

  it("finds the chain from the image folder when the task runs, and takes image.json's testBoot settings under the command line's", () => {
    workspace.write('images/demo/image.json', JSON.stringify({ base: { empty: '1G' }, testBoot: { memory: '2G', cpus: 1, expect: 'ready' } }));
    workspace.script('images/demo/20_top/build-layer');
    const fromImage = { imageName: 'demo', imageRoot: 'images/demo', distDir: 'dist/images' };
    expect(normalizeOptions(fromImage, workspace.root, terminal)).toMatchObject({
      memory: '2G',
      cpus: 1,
      expect: /ready/,
      timeoutMs: 300_000,
      disk: `${workspace.root}/dist/images/demo/20_top.qcow2`,
    });
    expect(normalizeOptions({ ...fromImage, memory: '512M', cpus: undefined }, workspace.root, terminal)).toMatchObject({ memory: '512M', cpus: 1 });
  });

  it('boots the chain up to the layer --upTo names (folder or number), never with --image', () => {
    workspace.write('images/demo/image.json', JSON.stringify({ base: { empty: '1G' } }));
    workspace.script('images/demo/10_mid/build-layer');
    workspace.script('images/demo/20_top/build-layer');
    workspace.write('dist/images/demo/10_mid.qcow2', 'disk');
    const fromImage = { imageName: 'demo', imageRoot: 'images/demo', distDir: 'dist/images' };
    expect(normalizeOptions({ ...fromImage, upTo: '10_mid' }, workspace.root, terminal).disk).toBe(`${workspace.root}/dist/images/demo/10_mid.qcow2`);
    expect(normalizeOptions({ ...fromImage, upTo: 10 }, workspace.root, terminal).disk).toBe(`${workspace.root}/dist/images/demo/10_mid.qcow2`);
    expect(() => normalizeOptions({ ...fromImage, upTo: '10', image: 'x.qcow2' }, workspace.root, terminal)).toThrow(
      "--upTo boots the image's own chain; --image boots a file: give one of them.",
    );
  });

  it.each([
    [{ expect: '([' }, "--expect '([' is not a regular expression"],
    [{ memory: 'lots' }, "--memory 'lots' is not a memory size"],
    [{ image: 'nope.qcow2' }, '--image nope.qcow2 does not exist.'],
    [{ chain: 'dist/images/demo/missing.qcow2' }, 'Image demo is not built (dist/images/demo/missing.qcow2 is missing): nx build image-demo'],
    [
      { ssh: 'true', cloudInitDir: 'images/demo/test-boot' },
      '--ssh needs a cloud-init seed to put its key into the guest: create images/demo/test-boot/user-data',
    ],
  ])('rejects %p', (override, message) => {
    expect(() => normalizeOptions({ ...base, ...override }, workspace.root, terminal)).toThrow(message);
  });
});

describe('qemuArguments', () => {
  it('boots the disk on virtio under a throwaway overlay, with the guest ssh port forwarded to localhost and entropy, console on stdio', () => {
    expect(qemuArguments('/tmp/x/boot.qcow2', { memory: '512M', cpus: 1, sshPort: 2222, kvm: false, interactive: false, snapshot: true })).toEqual([
      '-machine',
      'pc',
      '-accel',
      'tcg',
      '-m',
      '512M',
      '-smp',
      '1',
      '-drive',
      'file=/tmp/x/boot.qcow2,if=virtio,format=qcow2,cache=unsafe,snapshot=on',
      '-netdev',
      'user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22',
      '-device',
      'virtio-net-pci,netdev=net0',
      '-device',
      'virtio-rng-pci',
      '-no-reboot',
      '-display',
      'none',
      '-monitor',
      'none',
      '-serial',
      'stdio',
    ]);
    const interactive = qemuArguments('/tmp/a,b.img', { memory: '1G', cpus: 2, sshPort: 1, kvm: true, interactive: true, format: 'raw' });
    expect(interactive).toEqual(
      expect.arrayContaining(['-accel', 'kvm', '-cpu', 'host', '-nographic', 'file=/tmp/a,,b.img,if=virtio,format=raw,cache=unsafe']),
    );
  });
});

describe('diskFormat', () => {
  const workspace = new TempWorkspace();
  afterAll(() => workspace.remove());

  it('knows a qcow2 file from its first bytes, and asks qemu-img about any other', async () => {
    expect(await diskFormat(workspace.write('layer.qcow2', Buffer.from('QFI\xfb\0\0\0\x03', 'latin1')))).toBe('qcow2');
    expect(await diskFormat(workspace.write('disk.img', '\0'.repeat(4096)))).toBe('raw');
  });
});
