import { execFileSync } from 'node:child_process';
import { TempWorkspace } from '../../testing/temp-workspace';
import { EXPORT_EXTENSIONS, EXPORT_FORMATS, convertArguments, sha256Line } from './disk-export';
import { ovfDescriptor } from './ovf';

describe('export arguments', () => {
  const args = (format: (typeof EXPORT_FORMATS)[number], extra: { compress?: boolean; vmdkSubformat?: 'monolithicSparse' | 'streamOptimized' } = {}) =>
    convertArguments('/c/top.qcow2', '/o/out', { format, compress: false, vmdkSubformat: 'monolithicSparse', progress: true, ...extra }).join(' ');

  it('converts the chain with progress, and compresses on several threads', () => {
    expect(args('qcow2')).toBe('convert -p -f qcow2 -O qcow2 /c/top.qcow2 /o/out');
    expect(args('qcow2', { compress: true })).toBe('convert -p -W -m 16 -f qcow2 -O qcow2 -c -o compression_type=zstd /c/top.qcow2 /o/out');
  });

  it('asks qemu-img for what each platform wants', () => {
    expect(args('qcow2', { compress: true })).toContain('-O qcow2 -c -o compression_type=zstd');
    expect(args('raw')).toContain('-O raw -S 4k');
    expect(args('vmdk')).toContain('-O vmdk -o subformat=monolithicSparse');
    expect(args('vmdk', { vmdkSubformat: 'streamOptimized' })).toContain('-O vmdk -o subformat=streamOptimized');
    expect(args('ova')).toContain('-O vmdk -o subformat=streamOptimized');
    expect(args('vhdx')).toContain('-O vhdx -o subformat=dynamic');
    expect(args('vdi')).toContain('-O vdi /c/top.qcow2');
    expect(args('vpc')).toContain('-O vpc -o subformat=dynamic,force_size=on');
  });

  it('has a file extension for every format', () => {
    expect(EXPORT_FORMATS.map((format) => EXPORT_EXTENSIONS[format])).toEqual(['qcow2', 'raw', 'vmdk', 'vhdx', 'vdi', 'vhd', 'ova']);
  });

  it('writes the sha256 line sha256sum -c reads', () => {
    expect(sha256Line('ab'.repeat(32), '/x/y/tiny.raw')).toBe(`${'ab'.repeat(32)}  tiny.raw\n`);
  });
});

describe('ovfDescriptor', () => {
  const disk = { name: 'prod & co', vmdkFile: 'prod-disk1.vmdk', vmdkSize: 1234, capacity: 3221225472, machine: { cpus: 2, memoryMiB: 1024 } };

  it('is well-formed XML naming the disk file, its size and capacity, with names escaped', () => {
    const workspace = new TempWorkspace();
    try {
      const file = workspace.write('x.ovf', ovfDescriptor(disk));
      expect(() => execFileSync('xmllint', ['--noout', file])).not.toThrow();
    } finally {
      workspace.remove();
    }
    const ovf = ovfDescriptor(disk);
    expect(ovf).toContain('<File ovf:id="file1" ovf:href="prod-disk1.vmdk" ovf:size="1234"/>');
    expect(ovf).toContain('ovf:capacity="3221225472"');
    expect(ovf).toContain('<Name>prod &amp; co</Name>');
  });

  it('refuses impossible machines', () => {
    expect(() => ovfDescriptor({ ...disk, machine: { cpus: 0, memoryMiB: 1024 } })).toThrow('OVF: cpus must be a whole number >= 1, not 0.');
  });
});
