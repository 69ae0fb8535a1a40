import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';
import { sha256File } from '../src/lib/cache-identity/digest';
import { readFilesFromImage } from './support/disk-read';
import { describeLeftovers, findLeftovers, waitForProcessGroupExit } from './support/host-state';
import { NxWorkspace, cacheHits, startNx } from './support/nx-workspace';

const FORMATS: Array<[format: string, extension: string, qemuFormat: string]> = [
  ['qcow2', 'qcow2', 'qcow2'],
  ['raw', 'raw', 'raw'],
  ['vmdk', 'vmdk', 'vmdk'],
  ['vhdx', 'vhdx', 'vhdx'],
  ['vdi', 'vdi', 'vdi'],
  ['vpc', 'vhd', 'vpc'],
];

/** `nx run image-tiny:flatten`: one standalone file per format, checked against the chain with qemu-img. */
describe('flatten and export', () => {
  let workspace: NxWorkspace;
  const dist = (...parts: string[]) => workspace.path('dist/images/tiny', ...parts);
  const chain = () => dist('30_big.qcow2');
  const info = async (file: string) => JSON.parse((await execa('qemu-img', ['info', '--output=json', file])).stdout);

  beforeAll(async () => {
    workspace = new NxWorkspace({ images: ['tiny'] });
    // 40 MB of random data: enough for an export to take a moment, so it can be interrupted.
    workspace.script('images/tiny/30_big/build-layer', 'head -c 41943040 /dev/urandom > /big');
    await workspace.nxOk(['build', 'image-tiny']);
  }, 300_000);

  afterAll(async () => {
    const leftovers = describeLeftovers(await findLeftovers(workspace.root));
    if (leftovers) throw new Error(`leftovers under ${workspace.root}:\n${leftovers}`);
    workspace.remove();
  });

  it.each(FORMATS)('writes %s: standalone, the same disk content as the chain, with a sha256 file', async (format, extension, qemuFormat) => {
    const output = await workspace.nxOk(['run', 'image-tiny:flatten', `--format=${format}`]);
    const file = dist('export', format, `tiny.${extension}`);
    expect(output).toContain(`vmlb: image tiny exported in`);
    const described = await info(file);
    expect(described.format).toBe(qemuFormat);
    expect(described['backing-filename']).toBeUndefined();
    expect(described['virtual-size']).toBe((await info(chain()))['virtual-size']);
    await expect(execa('qemu-img', ['compare', '-f', 'qcow2', '-F', qemuFormat, chain(), file])).resolves.toMatchObject({ exitCode: 0 });
    // sha256sum -c reads the .sha256 file as written.
    await expect(execa('sha256sum', ['-c', `tiny.${extension}.sha256`], { cwd: path.dirname(file) })).resolves.toMatchObject({
      stdout: `tiny.${extension}: OK`,
    });
    expect(readdirSync(path.dirname(file)).sort()).toEqual([`tiny.${extension}`, `tiny.${extension}.sha256`]);
  });

  it('keeps raw output sparse', async () => {
    // Exported, not restored: Nx's cache gives files back fully allocated (docs/exporting.md).
    await workspace.nxOk(['run', 'image-tiny:flatten', '--format=raw', '--skip-nx-cache']);
    const raw = statSync(dist('export/raw/tiny.raw'));
    expect(raw.size).toBe(64 * 1024 * 1024);
    expect(raw.blocks * 512).toBeLessThan(raw.size * 0.9);
  });

  it('compresses qcow2 with zstd, and writes streamOptimized vmdk on request', async () => {
    await workspace.nxOk(['run', 'image-tiny:flatten', '--format=qcow2', '--compress']);
    const compressed = await info(dist('export/qcow2/tiny.qcow2'));
    expect(compressed['format-specific'].data['compression-type']).toBe('zstd');
    await expect(execa('qemu-img', ['compare', chain(), dist('export/qcow2/tiny.qcow2')])).resolves.toMatchObject({ exitCode: 0 });

    await workspace.nxOk(['run', 'image-tiny:flatten', '--format=vmdk', '--vmdkSubformat=streamOptimized']);
    expect((await info(dist('export/vmdk/tiny.vmdk')))['format-specific'].data['create-type']).toBe('streamOptimized');
  });

  it('packs an OVA: descriptor first, a manifest, and the vmdk it names with its size', async () => {
    await workspace.nxOk(['run', 'image-tiny:flatten', '--format=ova', '--cpus=1', '--memory=256']);
    const ova = dist('export/ova/tiny.ova');
    const listing = (await execa('tar', ['-tvf', ova])).stdout.split('\n');
    expect(listing.map((line) => line.split(/\s+/).pop())).toEqual(['tiny.ovf', 'tiny.mf', 'tiny-disk1.vmdk']);
    const unpacked = mkdtempSync(path.join(tmpdir(), 'vmlb-ova-'));
    try {
      await execa('tar', ['-xf', ova, '-C', unpacked]);
      const ovf = readFileSync(path.join(unpacked, 'tiny.ovf'), 'utf8');
      await expect(execa('xmllint', ['--noout', path.join(unpacked, 'tiny.ovf')])).resolves.toMatchObject({ exitCode: 0 });
      const vmdk = path.join(unpacked, 'tiny-disk1.vmdk');
      expect(ovf).toContain(`<File ovf:id="file1" ovf:href="tiny-disk1.vmdk" ovf:size="${statSync(vmdk).size}"/>`);
      expect(ovf).toContain(`ovf:capacity="${64 * 1024 * 1024}" ovf:capacityAllocationUnits="byte"`);
      expect(ovf).toContain('<rasd:VirtualQuantity>256</rasd:VirtualQuantity>');
      const manifest = readFileSync(path.join(unpacked, 'tiny.mf'), 'utf8');
      expect(manifest).toBe(`SHA256(tiny.ovf)= ${await sha256File(path.join(unpacked, 'tiny.ovf'))}\nSHA256(tiny-disk1.vmdk)= ${await sha256File(vmdk)}\n`);
      expect((await info(vmdk))['format-specific'].data['create-type']).toBe('streamOptimized');
      await expect(execa('qemu-img', ['compare', '-F', 'vmdk', chain(), vmdk])).resolves.toMatchObject({ exitCode: 0 });
    } finally {
      rmSync(unpacked, { recursive: true, force: true });
    }
  });

  it('is cached on the chain and the options, and exports again when a layer changes', async () => {
    await workspace.nxOk(['run', 'image-tiny:flatten', '--format=vdi']);
    const before = await sha256File(dist('export/vdi/tiny.vdi'));
    rmSync(dist('export/vdi'), { recursive: true });
    const hit = await workspace.nxOk(['run', 'image-tiny:flatten', '--format=vdi']);
    expect(cacheHits(hit)).toContain('image-tiny:flatten');
    expect(await sha256File(dist('export/vdi/tiny.vdi'))).toBe(before);

    workspace.script('images/tiny/30_big/build-layer', 'head -c 41943040 /dev/urandom > /big', 'echo changed > /etc/changed');
    const miss = await workspace.nxOk(['run', 'image-tiny:flatten', '--format=vdi']);
    expect(cacheHits(miss)).not.toContain('image-tiny:flatten');
    expect(await readFilesFromImage(chain(), ['/etc/changed'])).toEqual({ '/etc/changed': 'changed' });
    await expect(execa('qemu-img', ['compare', '-F', 'vdi', chain(), dist('export/vdi/tiny.vdi')])).resolves.toMatchObject({ exitCode: 0 });
  });

  it('leaves no partial file when interrupted, and keeps no stale export', async () => {
    await workspace.nxOk(['run', 'image-tiny:flatten', '--format=ova']);
    const nx = startNx(workspace, ['run', 'image-tiny:flatten', '--format=ova', '--skip-nx-cache', '--cpus=4']);
    await nx.waitForOutput('vmlb: exporting image tiny as ova', 120_000);
    process.kill(-nx.pid, 'SIGINT');
    const result = await nx.exited;
    expect(await waitForProcessGroupExit(nx.pid, 60_000)).toBe(true);
    expect(result.exitCode === 0 && result.signal === undefined).toBe(false);
    // Neither the old export (it no longer matches what was asked) nor any part of the new one.
    expect(readdirSync(dist('export/ova'))).toEqual([]);
    expect(existsSync(dist('export/ova/tiny.ova'))).toBe(false);
  });

  it('names the option and the fix for options that do not fit together', async () => {
    const run = await workspace.nx(['run', 'image-tiny:flatten', '--format=raw', '--compress']);
    expect(run.exitCode).not.toBe(0);
    expect(run.output).toContain('--compress applies to qcow2 only (got --format raw)');
  });
});
