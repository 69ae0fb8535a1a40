import * as path from 'node:path';
import { TempWorkspace } from '../../testing/temp-workspace';
import { run } from '../util/exec';
import { convertArguments } from '../export/disk-export';
import { ImageConfigError, parseImageConfig } from '../image/image-config';
import { type Qcow2Compat, checkQcow2Compat, convertToQcow2, createBlank, createOverlay } from './qcow2';

const MiB = 1024 * 1024;

describe('qcow2 compatibility levels', () => {
  let workspace: TempWorkspace;
  beforeEach(() => {
    workspace = new TempWorkspace();
  });
  afterEach(() => workspace.remove());
  /** `format-specific.data` of qemu-img info: compat, compression type... */
  const qcow2Data = async (file: string) => JSON.parse((await run('qemu-img', ['info', '--output=json', file])).stdout)['format-specific'].data;

  it.each<[Qcow2Compat | undefined, string]>([
    ['0.10', '0.10'],
    ['1.1', '1.1'],
    [undefined, '1.1'],
  ])('writes a blank disk, an overlay and an imported disk at compat %s', async (compat, expected) => {
    const base = workspace.path('chain/base.qcow2');
    await run('mkdir', ['-p', path.dirname(base)]);
    await createBlank(base, 64 * MiB, { compat });
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0xab 0 1M', base]);
    await createOverlay(base, workspace.path('chain/10_a.qcow2'), { compat });
    await run('qemu-img', ['convert', '-O', 'raw', base, workspace.path('disk.raw')]);
    await convertToQcow2(workspace.path('disk.raw'), workspace.path('imported.qcow2'), { sourceFormat: 'raw', compat });
    for (const file of ['chain/base.qcow2', 'chain/10_a.qcow2', 'imported.qcow2']) expect((await qcow2Data(workspace.path(file))).compat).toBe(expected);
    // The overlay still shows the base's bytes.
    await expect(run('qemu-io', ['-f', 'qcow2', '-c', 'read -P 0xab 0 1M', workspace.path('chain/10_a.qcow2')])).resolves.toMatchObject({ exitCode: 0 });
  });

  it('exports at the level asked for; a compressed 0.10 export uses zlib, which qcow2 version 2 has', async () => {
    const args = (compat?: Qcow2Compat, compress = false) =>
      convertArguments('/c/top.qcow2', '/o/out', { format: 'qcow2', compress, progress: false, qcow2Compat: compat }).join(' ');
    expect(args('0.10')).toBe('convert -f qcow2 -O qcow2 -o compat=0.10 /c/top.qcow2 /o/out');
    expect(args('1.1')).toBe('convert -f qcow2 -O qcow2 -o compat=1.1 /c/top.qcow2 /o/out');
    expect(args('0.10', true)).toBe('convert -W -m 16 -f qcow2 -O qcow2 -c -o compat=0.10 /c/top.qcow2 /o/out');
    expect(args('1.1', true)).toBe('convert -W -m 16 -f qcow2 -O qcow2 -c -o compat=1.1,compression_type=zstd /c/top.qcow2 /o/out');
    expect(args(undefined, true)).toBe('convert -W -m 16 -f qcow2 -O qcow2 -c -o compression_type=zstd /c/top.qcow2 /o/out');
    expect(convertArguments('/c/top.qcow2', '/o/out', { format: 'vmdk', compress: false, progress: false, qcow2Compat: '0.10' }).join(' ')).not.toContain(
      'compat',
    );

    // What qemu-img makes of them.
    const top = workspace.path('top.qcow2');
    await createBlank(top, 64 * MiB);
    await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0xcd 0 1M', top]);
    const out = workspace.path('out.qcow2');
    await run('qemu-img', convertArguments(top, out, { format: 'qcow2', compress: true, progress: false, qcow2Compat: '0.10' }));
    expect(await qcow2Data(out)).toMatchObject({ compat: '0.10', 'compression-type': 'zlib' });
  });

  it('refuses another level, naming the setting, the bad value and the fix', () => {
    expect(checkQcow2Compat(undefined, '--qcow2Compat')).toBeUndefined();
    expect(checkQcow2Compat('0.10', '--qcow2Compat')).toBe('0.10');
    expect(() => checkQcow2Compat('2', 'Layer 10_a: --qcow2Compat')).toThrow(
      `Layer 10_a: --qcow2Compat "2" is not a qcow2 compat level: use "0.10" (qcow2 version 2, for old hypervisors) or "1.1" (version 3, qemu-img's default).`,
    );
    const parse = (qcow2Compat: unknown) => () => parseImageConfig(JSON.stringify({ base: { empty: '1G' }, qcow2Compat }), 'images/x/image.json');
    expect(parse('0.10')().qcow2Compat).toBe('0.10');
    expect(parse('v2')).toThrow(ImageConfigError);
    expect(parse('v2')).toThrow(
      'images/x/image.json does not match the image schema:\n  - qcow2Compat "v2" is not a qcow2 compat level: use "0.10" (qcow2 version 2, for old hypervisors) or "1.1" (version 3, qemu-img\'s default)',
    );
    expect(parse(1.1)).toThrow(
      '  - qcow2Compat 1.1 is not a qcow2 compat level: use "0.10" (qcow2 version 2, for old hypervisors) or "1.1" (version 3, qemu-img\'s default), in quotes',
    );
  });
});
