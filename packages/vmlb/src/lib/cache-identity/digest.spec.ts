import * as fs from 'node:fs';
import * as path from 'node:path';
import { TempWorkspace } from '../../testing/temp-workspace';
import { chainDigest, isDigest, isSha256, readDigest, sha256File, writeDigest } from './digest';
import { run } from '../util/exec';

const MiB = 1024 * 1024;
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const ABC_SHA256 = 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad';

const workspace = new TempWorkspace();
afterAll(() => workspace.remove());

async function sha256sum(file: string): Promise<string> {
  const { stdout } = await run('sha256sum', ['--binary', file]);
  return stdout.split(' ')[0];
}

describe('sha256File', () => {
  it('matches the known vectors and sha256sum', async () => {
    const empty = workspace.write('empty', '');
    const abc = workspace.write('abc', 'abc');
    await expect(sha256File(empty)).resolves.toBe(EMPTY_SHA256);
    await expect(sha256File(abc)).resolves.toBe(ABC_SHA256);
    await expect(sha256sum(empty)).resolves.toBe(EMPTY_SHA256);
    await expect(sha256sum(abc)).resolves.toBe(ABC_SHA256);
  });

  it('matches sha256sum on a file spanning several read chunks, not a whole number of them', async () => {
    const random = workspace.write('random', Buffer.from(Array.from({ length: 3 * MiB + 123 }, (_, index) => (index * 7919) % 251)));
    await expect(sha256File(random)).resolves.toBe(await sha256sum(random));
  });

  it('streams a 300 MB sparse file with the process growing by less than 100 MB', async () => {
    const big = workspace.path('big.sparse');
    await run('truncate', ['-s', String(300 * 1000 * 1000), big]);
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 5);
    let digest: string;
    try {
      digest = await sha256File(big);
    } finally {
      clearInterval(sampler);
    }
    const after = process.memoryUsage().rss;
    peak = Math.max(peak, after);
    expect(after - before).toBeLessThan(100 * MiB);
    expect(peak - before).toBeLessThan(100 * MiB);
    expect(digest).toBe(await sha256sum(big));
  }, 60_000);

  it('fails with the path when the file does not exist', async () => {
    await expect(sha256File(workspace.path('absent'))).rejects.toThrow(`ENOENT: no such file or directory, open '${workspace.path('absent')}'`);
  });
});

describe('chainDigest', () => {
  it('is sha256 over the parent digest, a newline and the file', async () => {
    const layer = workspace.write('layer', 'layer bytes\0\x01\x02');
    const concatenated = workspace.write('concatenated', Buffer.concat([Buffer.from(`${ABC_SHA256}\n`, 'ascii'), fs.readFileSync(layer)]));
    await expect(chainDigest(ABC_SHA256, layer)).resolves.toBe(await sha256sum(concatenated));
  });

  it('changes when either the parent digest or the file changes', async () => {
    const layer = workspace.write('layer-a', 'one');
    const original = await chainDigest(ABC_SHA256, layer);
    await expect(chainDigest(EMPTY_SHA256, layer)).resolves.not.toBe(original);
    fs.writeFileSync(layer, 'two');
    await expect(chainDigest(ABC_SHA256, layer)).resolves.not.toBe(original);
    fs.writeFileSync(layer, 'one');
    await expect(chainDigest(ABC_SHA256, layer)).resolves.toBe(original);
  });

  it('refuses a parent digest that is not 64 lower-case hex digits', async () => {
    const layer = workspace.write('layer-b', 'x');
    await expect(chainDigest(ABC_SHA256.toUpperCase(), layer)).rejects.toThrow(
      `Parent digest for ${layer} must be 64 lower-case hex digits (a sha256), got "${ABC_SHA256.toUpperCase()}"`,
    );
    await expect(chainDigest('', layer)).rejects.toThrow(`Parent digest for ${layer} must be 64 lower-case hex digits (a sha256), got ""`);
  });
});

describe('readDigest and writeDigest', () => {
  it('writes the digest and a newline, and reads it back', async () => {
    const file = workspace.path('00_base.digest');
    await writeDigest(file, ABC_SHA256);
    expect(fs.readFileSync(file, 'latin1')).toBe(`${ABC_SHA256}\n`);
    await expect(readDigest(file)).resolves.toBe(ABC_SHA256);
    await writeDigest(file, EMPTY_SHA256);
    await expect(readDigest(file)).resolves.toBe(EMPTY_SHA256);
    expect(isDigest(EMPTY_SHA256)).toBe(true);
  });

  it('names the malformed file and shows what it holds', async () => {
    const noNewline = workspace.write('no-newline.digest', ABC_SHA256);
    await expect(readDigest(noNewline)).rejects.toThrow(
      `Digest file ${noNewline} is malformed: expected 64 lower-case hex digits and a newline, found "${ABC_SHA256}". Delete it to rebuild.`,
    );
    const halfWritten = workspace.write('half.digest', ABC_SHA256.slice(0, 20));
    await expect(readDigest(halfWritten)).rejects.toThrow(
      `Digest file ${halfWritten} is malformed: expected 64 lower-case hex digits and a newline, found "${ABC_SHA256.slice(0, 20)}".`,
    );
    const long = workspace.write('long.digest', 'x'.repeat(200));
    await expect(readDigest(long)).rejects.toThrow(`found "${'x'.repeat(80)}"... (200 bytes). Delete it to rebuild.`);
  });

  it('lets a missing file surface as ENOENT', async () => {
    await expect(readDigest(workspace.path('absent.digest'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('refuses to write something that is not a digest, and leaves nothing behind', async () => {
    const folder = workspace.mkdir('refuse');
    await expect(writeDigest(path.join(folder, 'x.digest'), 'not-a-digest')).rejects.toThrow(
      `Digest for ${path.join(folder, 'x.digest')} must be 64 lower-case hex digits (a sha256), got "not-a-digest"`,
    );
    await expect(writeDigest(path.join(folder, 'missing-folder', 'x.digest'), ABC_SHA256)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(fs.readdirSync(folder)).toEqual([]);
  });

  it('never shows a reader half a file while it is being replaced', async () => {
    const folder = workspace.mkdir('atomic');
    const file = path.join(folder, '10_update.digest');
    await writeDigest(file, ABC_SHA256);
    const seen = new Set<string>();
    let writing = true;
    const writer = (async () => {
      for (let round = 0; round < 200; round += 1) {
        await writeDigest(file, round % 2 === 0 ? EMPTY_SHA256 : ABC_SHA256);
      }
      writing = false;
    })();
    const readers = Array.from({ length: 4 }, async () => {
      while (writing) {
        seen.add(await readDigest(file));
      }
    });
    await Promise.all([writer, ...readers]);
    expect([...seen].every((digest) => digest === ABC_SHA256 || digest === EMPTY_SHA256)).toBe(true);
    expect(fs.readdirSync(folder)).toEqual(['10_update.digest']);
  });
});

describe('isSha256', () => {
  const lower = 'ab'.repeat(32);

  it('takes 64 lower-case hex digits, and upper-case ones only with anyCase', () => {
    expect(isSha256(lower)).toBe(true);
    expect(isSha256(lower.toUpperCase())).toBe(false);
    expect(isSha256(lower.toUpperCase(), { anyCase: true })).toBe(true);
  });

  it('refuses other lengths, other letters and surrounding space in either case', () => {
    for (const text of [lower.slice(1), `${lower}0`, `${lower.slice(1)}g`, ` ${lower}`, `${lower}\n`, '']) {
      expect(isSha256(text)).toBe(false);
      expect(isSha256(text, { anyCase: true })).toBe(false);
    }
  });
});
