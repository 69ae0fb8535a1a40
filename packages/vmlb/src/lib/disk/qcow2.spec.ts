import * as fs from 'node:fs';
import * as path from 'node:path';
import { useFakeChain } from '../../testing/fake-layers';
import { overwriteBytes, zeroBytes } from '../../testing/file-damage';
import { run } from '../util/exec';
import { convertToQcow2, createBlank, createOverlay } from './qcow2';
import { backingChain, checkImage, imageInfo } from './qcow2-info';

// A real chain of qcow2 files, base.qcow2 ← 00_system.qcow2 ← 10_update.qcow2,
// made and inspected by the real qemu-img.

const MiB = 1024 * 1024;

const { workspace, chainDir, copyChain } = useFakeChain([
  // Data in the base that every overlay must show through.
  { name: 'base', size: 64 * MiB, write: 'write -P 0xab 0 1M' },
  { name: '00_system' },
  { name: '10_update', size: 128 * MiB },
]);
const workDir = workspace.root;

describe('createBlank and createOverlay', () => {
  it('records each backing file by bare file name', async () => {
    const { stdout } = await run('qemu-img', ['info', '--output=json', '-U', path.join(chainDir, '10_update.qcow2')]);
    expect(JSON.parse(stdout)['backing-filename']).toBe('00_system.qcow2');
    await expect(imageInfo(path.join(chainDir, '00_system.qcow2'))).resolves.toMatchObject({
      filename: path.join(chainDir, '00_system.qcow2'),
      format: 'qcow2',
      virtualSize: 64 * MiB,
      backingFile: 'base.qcow2',
      fullBackingFile: path.join(chainDir, 'base.qcow2'),
      backingFormat: 'qcow2',
      dirty: false,
      corrupt: false,
    });
  });

  it('gives the overlay the requested size, else the parent size', async () => {
    expect((await imageInfo(path.join(chainDir, 'base.qcow2'))).virtualSize).toBe(64 * MiB);
    expect((await imageInfo(path.join(chainDir, '10_update.qcow2'))).virtualSize).toBe(128 * MiB);
    expect((await imageInfo(path.join(chainDir, 'base.qcow2'))).backingFile).toBeUndefined();
  });

  it('produces byte-identical files from the same parent', async () => {
    const first = path.join(chainDir, 'same-1.qcow2');
    const second = path.join(chainDir, 'same-2.qcow2');
    await createOverlay(path.join(chainDir, '00_system.qcow2'), first, { size: 96 * MiB });
    // Past a second boundary, so a timestamp in the header would show.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await createOverlay(path.join(chainDir, '00_system.qcow2'), second, { size: 96 * MiB });
    expect(fs.readFileSync(first).equals(fs.readFileSync(second))).toBe(true);
    fs.rmSync(first);
    fs.rmSync(second);
  });

  it('refuses a size smaller than the parent, naming both sizes', async () => {
    const output = path.join(chainDir, '20_small.qcow2');
    await expect(createOverlay(path.join(chainDir, '10_update.qcow2'), output, { size: 100 * MiB })).rejects.toThrow(
      "# disk-size 100 MiB for 20_small.qcow2 is smaller than its parent 10_update.qcow2 (128 MiB); # disk-size must be at least the parent's size (128 MiB), since a disk cannot shrink under its partitions",
    );
    await expect(createOverlay(path.join(chainDir, '10_update.qcow2'), output, { size: 128 * MiB - 512 })).rejects.toThrow(
      '# disk-size 128 MiB (134217216 bytes) for 20_small.qcow2 is smaller than its parent 10_update.qcow2 (128 MiB (134217728 bytes))',
    );
    expect(fs.existsSync(output)).toBe(false);
  });

  it('refuses sizes qemu-img would round', async () => {
    await expect(createOverlay(path.join(chainDir, 'base.qcow2'), path.join(chainDir, 'odd.qcow2'), { size: 100 * MiB + 1 })).rejects.toThrow(
      `Overlay size for ${path.join(chainDir, 'odd.qcow2')} must be a multiple of 512 bytes, got 104857601`,
    );
    await expect(createBlank(path.join(chainDir, 'zero.qcow2'), 0)).rejects.toThrow(
      `Disk size for ${path.join(chainDir, 'zero.qcow2')} must be a positive whole number of bytes, got 0`,
    );
  });

  it('names a parent in a sibling folder as ../<folder>/<file> (another image’s layer), and the chain opens', async () => {
    const sibling = path.join(path.dirname(chainDir), 'derived');
    fs.mkdirSync(sibling);
    await createOverlay(path.join(chainDir, '10_update.qcow2'), path.join(sibling, '10_app.qcow2'));
    const chain = await backingChain(path.join(sibling, '10_app.qcow2'));
    expect(chain[0].backingFile).toBe(`../${path.basename(chainDir)}/10_update.qcow2`);
    expect(chain.map((info) => info.filename)).toEqual([
      path.join(sibling, '10_app.qcow2'),
      ...['10_update.qcow2', '00_system.qcow2', 'base.qcow2'].map((name) => path.join(chainDir, name)),
    ]);
  });

  it('refuses a parent in any other folder, and the parent itself as output', async () => {
    await expect(createOverlay(path.join(chainDir, 'base.qcow2'), path.join(workDir, 'elsewhere.qcow2'))).rejects.toThrow(
      `Overlay in ${workDir} cannot name its backing file ${path.join(chainDir, 'base.qcow2')}: overlays name their backing file by bare file name, or as ../<folder>/<file>`,
    );
    fs.mkdirSync(path.join(chainDir, 'sub'));
    await expect(createOverlay(path.join(chainDir, 'base.qcow2'), path.join(chainDir, 'sub', 'x.qcow2'))).rejects.toThrow(
      `Overlay in ${path.join(chainDir, 'sub')} cannot name its backing file`,
    );
    await expect(createOverlay(path.join(chainDir, 'base.qcow2'), path.join(chainDir, 'base.qcow2'))).rejects.toThrow(
      `Overlay ${path.join(chainDir, 'base.qcow2')} cannot be its own backing file`,
    );
  });

  it('refuses a parent that does not exist', async () => {
    await expect(createOverlay(path.join(chainDir, 'nope.qcow2'), path.join(chainDir, 'x.qcow2'))).rejects.toThrow(
      `Disk image ${path.join(chainDir, 'nope.qcow2')} does not exist`,
    );
  });
});

describe('backingChain', () => {
  it('lists the chain top first with absolute file names', async () => {
    const chain = await backingChain(path.join(chainDir, '10_update.qcow2'));
    expect(chain.map((info) => info.filename)).toEqual(['10_update.qcow2', '00_system.qcow2', 'base.qcow2'].map((name) => path.join(chainDir, name)));
    expect(chain.map((info) => info.backingFile)).toEqual(['00_system.qcow2', 'base.qcow2', undefined]);
  });

  it('stays valid when the whole folder moves', async () => {
    const moved = path.join(workDir, 'moved', 'somewhere');
    fs.mkdirSync(path.dirname(moved), { recursive: true });
    fs.renameSync(copyChain('to-move'), moved);
    const top = path.join(moved, '10_update.qcow2');
    const chain = await backingChain(top);
    expect(chain.map((info) => info.filename)).toEqual(['10_update.qcow2', '00_system.qcow2', 'base.qcow2'].map((name) => path.join(moved, name)));
    await expect(checkImage(top)).resolves.toMatchObject({ corruptions: 0, leaks: 0 });
    // The base's data still shows through both overlays (compare treats the extra 64 MiB as zeros).
    await expect(run('qemu-img', ['compare', '-U', '-f', 'qcow2', '-F', 'qcow2', top, path.join(moved, 'base.qcow2')])).resolves.toMatchObject({
      exitCode: 0,
    });
  });

  it('names the missing backing file and the overlay that points at it', async () => {
    const copy = copyChain('missing-middle');
    fs.rmSync(path.join(copy, '00_system.qcow2'));
    const expected =
      `Backing file ${path.join(copy, '00_system.qcow2')} of ${path.join(copy, '10_update.qcow2')} (which names it "00_system.qcow2") is missing. ` +
      `Restore it, or rebuild ${path.join(copy, '10_update.qcow2')} and every layer after it.`;
    await expect(backingChain(path.join(copy, '10_update.qcow2'))).rejects.toThrow(expected);
    await expect(checkImage(path.join(copy, '10_update.qcow2'))).rejects.toThrow(expected);
    // The overlay alone is still readable: info does not open backing files.
    await expect(imageInfo(path.join(copy, '10_update.qcow2'))).resolves.toMatchObject({ backingFile: '00_system.qcow2' });
  });

  it('names a backing file whose header is destroyed, and the overlay that points at it', async () => {
    const copy = copyChain('corrupt-middle');
    zeroBytes(path.join(copy, '00_system.qcow2'), 0, 512);
    await expect(backingChain(path.join(copy, '10_update.qcow2'))).rejects.toThrow(
      `Backing file ${path.join(copy, '00_system.qcow2')} of ${path.join(copy, '10_update.qcow2')} (which names it "00_system.qcow2") ` +
        `is not a valid qcow2 image (qemu-img reads it as raw; its header is damaged): ` +
        `Could not open '${path.join(copy, '00_system.qcow2')}': Image is not in qcow2 format. ` +
        'Delete it and rebuild it and every layer after it.',
    );
  });

  it('says when the top file itself does not exist', async () => {
    await expect(backingChain(path.join(chainDir, 'absent.qcow2'))).rejects.toThrow(`Disk image ${path.join(chainDir, 'absent.qcow2')} does not exist`);
  });
});

describe('checkImage', () => {
  it('returns the result for a sound image', async () => {
    await expect(checkImage(path.join(chainDir, '10_update.qcow2'))).resolves.toMatchObject({
      filename: path.join(chainDir, '10_update.qcow2'),
      format: 'qcow2',
      corruptions: 0,
      leaks: 0,
      checkErrors: 0,
    });
  });

  it('refuses a file whose header is zeroed', async () => {
    const damaged = path.join(workDir, 'zeroed-header.qcow2');
    fs.copyFileSync(path.join(chainDir, 'base.qcow2'), damaged);
    zeroBytes(damaged, 0, 512);
    await expect(checkImage(damaged)).rejects.toThrow(
      `Disk image ${damaged} is not a valid qcow2 image (qemu-img reads it as raw; its header is damaged): ` +
        `Could not open '${damaged}': Image is not in qcow2 format.`,
    );
  });

  it('reports metadata corruption found by qemu-img check', async () => {
    const damaged = path.join(workDir, 'bad-l2.qcow2');
    fs.copyFileSync(path.join(chainDir, 'base.qcow2'), damaged);
    // Point the first data cluster's L2 entry at an unaligned offset: qemu-img check counts that as corruption.
    const header = fs.readFileSync(damaged);
    const l1Offset = Number(header.readBigUInt64BE(40));
    const l2Offset = Number(header.readBigUInt64BE(l1Offset) & 0x00fffffffffffe00n);
    const entry = header.readBigUInt64BE(l2Offset);
    const broken = Buffer.alloc(8);
    broken.writeBigUInt64BE((entry & ~0xffffffffffffn) | 0x123400n);
    overwriteBytes(damaged, l2Offset, broken);
    await expect(checkImage(damaged)).rejects.toThrow(
      new RegExp(
        `^${escapeRegExp(damaged)} is corrupt: qemu-img check found \\d+ corruptions? .*Delete it and rebuild the layer \\(and every layer after it\\)\\.\\n.*L2 entry corrupted`,
        's',
      ),
    );
  });
});

describe('convertToQcow2', () => {
  it('imports a partitioned raw disk as an identical, sparse qcow2', async () => {
    const raw = path.join(workDir, 'disk.raw');
    await run('truncate', ['-s', String(32 * MiB), raw]);
    await run('sfdisk', ['--quiet', raw], { input: 'label: dos\ntype=83\n' });
    const output = path.join(workDir, 'imported', 'base.qcow2');
    fs.mkdirSync(path.dirname(output));
    await convertToQcow2(raw, output, { sourceFormat: 'raw' });
    const info = await imageInfo(output);
    expect(info).toMatchObject({ format: 'qcow2', virtualSize: 32 * MiB });
    expect(info.backingFile).toBeUndefined();
    expect(info.actualSize).toBeLessThan(2 * MiB);
    await expect(run('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', raw, output])).resolves.toMatchObject({ exitCode: 0 });
    expect(fs.readdirSync(path.dirname(output))).toEqual(['base.qcow2']);
  });

  it('leaves nothing behind when the conversion fails', async () => {
    const notQcow2 = path.join(workDir, 'not-qcow2.raw');
    fs.writeFileSync(notQcow2, Buffer.alloc(4096));
    const outputDir = path.join(workDir, 'failed-import');
    fs.mkdirSync(outputDir);
    await expect(convertToQcow2(notQcow2, path.join(outputDir, 'base.qcow2'), { sourceFormat: 'qcow2' })).rejects.toThrow(
      /qemu-img convert -f qcow2 -O qcow2 .* exited with code 1:\n.*Image is not in qcow2 format/,
    );
    expect(fs.readdirSync(outputDir)).toEqual([]);
  });

  it('says when the source does not exist', async () => {
    await expect(convertToQcow2(path.join(workDir, 'no.raw'), path.join(workDir, 'x.qcow2'), { sourceFormat: 'raw' })).rejects.toThrow(
      `Source disk ${path.join(workDir, 'no.raw')} does not exist`,
    );
  });
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
