import * as fs from 'node:fs';
import * as path from 'node:path';
import { flipByte } from '../../testing/file-damage';
import { useFakeChain, writeFakeManifest } from '../../testing/fake-layers';
import { localCacheEntryOf, verifyChain } from './chain-verify';

// A real chain, base.qcow2 ← 00_disk.qcow2 ← 10_hello.qcow2, with data
// written by qemu-io into each file and digests written as a build does.

const MiB = 1024 * 1024;
const { workspace, chainDir, copyChain } = useFakeChain(
  ['base', '00_disk', '10_hello'].map((name, index) => ({ name, size: 16 * MiB, write: `write -P 0x${(0xa0 + index).toString(16)} ${index}M 1M` })),
);
const workDir = workspace.root;

/** Flips one byte of a file's data, past the qcow2 header: qemu-img still opens it. */
function flipByteOfData(file: string): void {
  flipByte(file, fs.statSync(file).size - 4096);
}

const options = (log: (message: string) => void = () => undefined) => ({
  imageName: 'tiny',
  workspaceRoot: workDir,
  log,
  buildCommand: 'nx run image-tiny:build --verify',
});

describe('verifyChain', () => {
  it('checks every file base first and returns each with its digest and size', async () => {
    const log = jest.fn();
    const verified = await verifyChain(path.join(chainDir, '10_hello.qcow2'), options(log));

    expect(verified.map((layer) => path.basename(layer.file))).toEqual(['base.qcow2', '00_disk.qcow2', '10_hello.qcow2']);
    for (const layer of verified) {
      expect(layer.digest).toBe(fs.readFileSync(layer.file.replace(/\.qcow2$/, '.digest'), 'utf8').trim());
      expect(layer.bytes).toBe(fs.statSync(layer.file).size);
    }
    expect(log.mock.calls.map(([message]) => message)).toEqual([
      expect.stringMatching(/^vmlb: verifying chain\/base\.qcow2 \(/),
      expect.stringMatching(/^vmlb: verifying chain\/00_disk\.qcow2 \(/),
      expect.stringMatching(/^vmlb: verifying chain\/10_hello\.qcow2 \(/),
      expect.stringMatching(/^vmlb: image tiny: all 3 files of the chain match their digests \(.* read in .*\)$/),
    ]);
  });

  it('verifies a chain reached through a link to its top, as image.qcow2 is', async () => {
    const copy = copyChain('linked');
    fs.symlinkSync('10_hello.qcow2', path.join(copy, 'image.qcow2'));
    const verified = await verifyChain(path.join(copy, 'image.qcow2'), options());
    expect(verified.map((layer) => path.relative(copy, layer.file))).toEqual(['base.qcow2', '00_disk.qcow2', '10_hello.qcow2']);
  });

  it('names a damaged layer, what its digest says and what its bytes give, and how to get it back: remove it, build again', async () => {
    const copy = copyChain('damaged-layer');
    flipByteOfData(path.join(copy, '00_disk.qcow2'));

    await expect(verifyChain(path.join(copy, '10_hello.qcow2'), options())).rejects.toThrow(
      new RegExp(
        '^Image tiny: damaged-layer/00_disk\\.qcow2 does not match its digest: damaged-layer/00_disk\\.digest says [0-9a-f]{12}, ' +
          'its bytes on top of base\\.qcow2 give [0-9a-f]{12}\\. The file was damaged on disk, or restored damaged from a cache\\. ' +
          'Remove it \\(rm damaged-layer/00_disk\\.\\*\\), then nx run image-tiny:build --verify \\(add --skip-remote-cache if it comes back damaged from a remote cache\\)\\.$',
      ),
    );
  });

  it('names a damaged base the same way, with no parent to build on', async () => {
    const copy = copyChain('damaged-base');
    flipByteOfData(path.join(copy, 'base.qcow2'));

    await expect(verifyChain(path.join(copy, '10_hello.qcow2'), options())).rejects.toThrow(
      /^Image tiny: damaged-base\/base\.qcow2 does not match its digest: damaged-base\/base\.digest says [0-9a-f]{12}, its bytes give [0-9a-f]{12}\. .* Remove it \(rm damaged-base\/base\.\*\)/,
    );
  });

  it("names the entry of Nx's local cache that holds the layer's build, which would restore it damaged again", async () => {
    const copy = copyChain('damaged-cached');
    const nxCacheDir = path.join(workDir, 'nx-cache');
    await writeFakeManifest(path.join(copy, '00_disk.qcow2'), '1234567890');
    const entryFile = path.join(nxCacheDir, '1234567890', 'damaged-cached', '00_disk.qcow2');
    fs.mkdirSync(path.dirname(entryFile), { recursive: true });
    fs.copyFileSync(path.join(copy, '00_disk.qcow2'), entryFile);
    flipByteOfData(path.join(copy, '00_disk.qcow2'));

    await expect(verifyChain(path.join(copy, '10_hello.qcow2'), { ...options(), nxCacheDir })).rejects.toThrow(
      `Nx's local cache has an entry for this build of it, which restores the same bytes again if that is where they came from: rm -rf ${path.join(nxCacheDir, '1234567890')}, then nx run image-tiny:build --verify (add --skip-remote-cache if it comes back damaged from a remote cache).`,
    );
  });

  it('stops at the first layer that does not match, before reading the layers above it', async () => {
    const copy = copyChain('first-only');
    flipByteOfData(path.join(copy, '00_disk.qcow2'));
    flipByteOfData(path.join(copy, '10_hello.qcow2'));
    const log = jest.fn();

    await expect(verifyChain(path.join(copy, '10_hello.qcow2'), options(log))).rejects.toThrow(/first-only\/00_disk\.qcow2 does not match/);
    expect(log.mock.calls.map(([message]) => message).join('\n')).not.toContain('10_hello');
  });

  it('refuses a layer with no digest: it is not a finished layer', async () => {
    const copy = copyChain('no-digest');
    fs.rmSync(path.join(copy, '10_hello.digest'));

    await expect(verifyChain(path.join(copy, '10_hello.qcow2'), options())).rejects.toThrow(
      'Image tiny: no-digest/10_hello.qcow2 has no digest (no-digest/10_hello.digest), so it is not a finished layer. Remove it (rm no-digest/10_hello.*), then nx run image-tiny:build --verify',
    );
  });

  it('names the missing file when the chain is broken', async () => {
    const copy = copyChain('broken');
    fs.rmSync(path.join(copy, '00_disk.qcow2'));

    await expect(verifyChain(path.join(copy, '10_hello.qcow2'), options())).rejects.toThrow(/00_disk\.qcow2/);
  });
});

describe('localCacheEntryOf', () => {
  const nxCacheDir = () => path.join(workDir, 'entries');

  it("finds the Nx cache entry of the task hash the layer's manifest records", async () => {
    const copy = copyChain('entry-nx');
    await writeFakeManifest(path.join(copy, '10_hello.qcow2'), '42');
    fs.mkdirSync(path.join(nxCacheDir(), '42', 'entry-nx'), { recursive: true });
    fs.writeFileSync(path.join(nxCacheDir(), '42', 'entry-nx', '10_hello.qcow2'), '');
    expect(localCacheEntryOf(path.join(copy, '10_hello.qcow2'), nxCacheDir(), workDir)).toBe(path.join(nxCacheDir(), '42'));
  });

  it("finds a # noshare layer's entry in vmlb's store beside Nx's cache", async () => {
    const copy = copyChain('entry-noshare');
    await writeFakeManifest(path.join(copy, '10_hello.qcow2'), '43');
    fs.mkdirSync(path.join(nxCacheDir(), 'vmlb-noshare', '43'), { recursive: true });
    fs.writeFileSync(path.join(nxCacheDir(), 'vmlb-noshare', '43', 'layer'), '');
    expect(localCacheEntryOf(path.join(copy, '10_hello.qcow2'), nxCacheDir(), workDir)).toBe(path.join(nxCacheDir(), 'vmlb-noshare', '43'));
  });

  it('finds nothing without a manifest, without an entry, or for a recorded hash that is not a plain path segment', async () => {
    const copy = copyChain('entry-none');
    expect(localCacheEntryOf(path.join(copy, '10_hello.qcow2'), nxCacheDir(), workDir)).toBeUndefined();
    await writeFakeManifest(path.join(copy, '10_hello.qcow2'), '44');
    expect(localCacheEntryOf(path.join(copy, '10_hello.qcow2'), nxCacheDir(), workDir)).toBeUndefined();
    fs.mkdirSync(path.join(nxCacheDir(), 'entry-none'), { recursive: true });
    fs.writeFileSync(path.join(nxCacheDir(), 'entry-none', '10_hello.qcow2'), '');
    await writeFakeManifest(path.join(copy, '10_hello.qcow2'), '..');
    expect(localCacheEntryOf(path.join(copy, '10_hello.qcow2'), path.join(nxCacheDir(), 'x'), workDir)).toBeUndefined();
  });
});
