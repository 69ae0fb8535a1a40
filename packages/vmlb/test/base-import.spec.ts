import { createServer, type Server } from 'node:http';
import { createReadStream, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';
import { importBase } from '../src/lib/build/base-import';
import { ROOT_DIGEST, chainDigest, sha256File } from '../src/lib/cache-identity/digest';

/**
 * Base import on real disks: a raw disk with a known pattern is served as a
 * file:// URL and by an HTTP server on 127.0.0.1, plain and compressed, and
 * the imported qcow2 must hold the same bytes (qemu-img compare).
 */
describe('importBase', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vmlb-base-'));
  const cache = path.join(dir, 'downloads');
  const out = (name: string) => path.join(dir, 'dist', name, 'base.qcow2');
  const logs: string[] = [];
  const log = (message: string) => logs.push(message);
  let server: Server;
  let requests: string[] = [];
  let baseUrl: string;
  const raw = path.join(dir, 'disk.raw');

  beforeAll(async () => {
    // 8 MiB with a recognisable pattern at the start and some data further in.
    await execa('truncate', ['-s', '8M', raw]);
    await execa('sh', ['-c', `printf 'vmlb base disk' | dd of=${raw} conv=notrunc status=none && head -c 1048576 /dev/urandom | dd of=${raw} bs=1M seek=3 conv=notrunc status=none`]);
    await execa('gzip', ['-k', raw]);
    await execa('xz', ['-k', '-T1', raw]);
    await execa('zstd', ['-q', '-k', raw]);
    server = createServer((request, response) => {
      requests.push(request.url ?? '');
      if (request.url === '/truncated.raw') {
        // Promises the whole disk, sends 1 MiB of it, then drops the connection.
        response.writeHead(200, { 'content-length': statSync(raw).size });
        response.write(Buffer.alloc(1024 * 1024), () => response.destroy());
        return;
      }
      const file = path.join(dir, decodeURIComponent(request.url ?? '/'));
      if (!request.url || !existsSync(file) || !statSync(file).isFile()) {
        response.writeHead(404).end('not found');
        return;
      }
      response.writeHead(200, { 'content-length': statSync(file).size });
      createReadStream(file).pipe(response);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  beforeEach(() => {
    requests = [];
    logs.length = 0;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  const sameContent = async (qcow2: string) => {
    const { stdout } = await execa('qemu-img', ['info', '--output=json', qcow2]);
    expect(JSON.parse(stdout)).toMatchObject({ format: 'qcow2', 'virtual-size': 8 * 1024 * 1024 });
    await expect(execa('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', qcow2, raw])).resolves.toMatchObject({ exitCode: 0 });
  };

  it.each(['disk.raw', 'disk.raw.gz', 'disk.raw.xz', 'disk.raw.zst'])('imports %s over HTTP, verified and converted to qcow2', async (file) => {
    const sha256 = await sha256File(path.join(dir, file));
    const { digest } = await importBase({ url: `${baseUrl}/${file}`, sha256 }, out(file), { downloadCache: cache, log, workspaceRoot: dir });
    await sameContent(out(file));
    expect(digest).toBe(await chainDigest(ROOT_DIGEST, out(file)));
    expect(readFileSync(path.join(path.dirname(out(file)), 'base.digest'), 'utf8')).toBe(`${digest}\n`);
    expect(logs.some((line) => /disk\.raw.*MiB.* at .*\/s/.test(line))).toBe(true);
  });

  it('downloads a base shared by two images once', async () => {
    const sha256 = await sha256File(raw);
    await importBase({ url: `${baseUrl}/disk.raw`, sha256 }, out('second'), { downloadCache: cache, log, workspaceRoot: dir });
    expect(requests).toEqual([]);
    expect(logs.join('\n')).toMatch(/from the download cache/);
    await sameContent(out('second'));
  });

  it('imports a file:// URL', async () => {
    const sha256 = await sha256File(path.join(dir, 'disk.raw.gz'));
    await importBase({ url: `file://${dir}/disk.raw.gz`, sha256 }, out('file-url'), { downloadCache: path.join(dir, 'other-cache'), log, workspaceRoot: dir });
    await sameContent(out('file-url'));
  });

  it('refuses a sha256 mismatch, shows both digests and keeps nothing', async () => {
    const wrong = 'f'.repeat(64);
    const actual = await sha256File(path.join(dir, 'disk.raw.xz'));
    const failure = importBase({ url: `${baseUrl}/disk.raw.xz`, sha256: wrong }, out('mismatch'), {
      downloadCache: path.join(dir, 'mismatch-cache'),
      log,
      workspaceRoot: dir,
      configFile: 'images/x/image.json',
    });
    await expect(failure).rejects.toThrow(
      `sha256 mismatch for ${baseUrl}/disk.raw.xz:\n  expected ${wrong} (base.sha256 in images/x/image.json)\n  actual   ${actual}\n` +
        'Nothing was kept. Check base.url, or update base.sha256 if the file was meant to change.',
    );
    expect(existsSync(out('mismatch'))).toBe(false);
    expect(readdirSync(path.dirname(out('mismatch')))).toEqual([]);
    expect(readdirSync(path.join(dir, 'mismatch-cache'))).toEqual([]);
  });

  it('says what the server answered for a missing file, and when nothing answers', async () => {
    await expect(
      importBase({ url: `${baseUrl}/nope.raw`, sha256: 'a'.repeat(64) }, out('missing'), { downloadCache: cache, log, workspaceRoot: dir, configFile: 'images/x/image.json' }),
    ).rejects.toThrow(`Cannot download ${baseUrl}/nope.raw: the server answered 404 Not Found. Check base.url in images/x/image.json.`);
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    await expect(importBase({ url: `http://127.0.0.1:${port}/disk.raw`, sha256: 'a'.repeat(64) }, out('down'), { downloadCache: cache, log, workspaceRoot: dir })).rejects.toThrow(
      new RegExp(`^Cannot download http://127\\.0\\.0\\.1:${port}/disk\\.raw: .*ECONNREFUSED.*\\. Check base\\.url in image\\.json, and that this host reaches the server`),
    );
    expect(existsSync(out('missing'))).toBe(false);
  });

  it('refuses a download cut short, naming the URL, and keeps nothing', async () => {
    const downloads = path.join(dir, 'truncated-cache');
    const failure = importBase({ url: `${baseUrl}/truncated.raw`, sha256: 'a'.repeat(64) }, out('truncated'), { downloadCache: downloads, log, workspaceRoot: dir });
    await expect(failure).rejects.toThrow(
      new RegExp(`^Cannot download ${baseUrl.replace(/\./g, '\\.')}/truncated\\.raw: the transfer stopped after \\d+ of 8388608 bytes \\(.+\\)\\. Nothing was kept; build again to retry\\.$`),
    );
    expect(existsSync(out('truncated'))).toBe(false);
    expect(existsSync(downloads) ? readdirSync(downloads) : []).toEqual([]);
  });

  it('imports a local disk file without changing it', async () => {
    const before = await sha256File(raw);
    await importBase({ path: 'disk.raw' }, out('local'), { downloadCache: cache, log, workspaceRoot: dir });
    await sameContent(out('local'));
    expect(await sha256File(raw)).toBe(before);
  });

  it('refuses a file that is not a disk image of a known size', async () => {
    const text = path.join(dir, 'notes.txt.gz');
    writeFileSync(path.join(dir, 'notes.txt'), 'not a disk');
    await execa('gzip', ['-kf', path.join(dir, 'notes.txt')]);
    const sha256 = await sha256File(text);
    await expect(importBase({ url: `file://${text}`, sha256 }, out('text'), { downloadCache: cache, log, workspaceRoot: dir, configFile: 'images/x/image.json' })).rejects.toThrow(
      'notes.txt.gz is not a disk image: qemu-img sees no image format in it, and as a raw disk its 10 bytes are not a whole number of 512-byte sectors. ' +
        'Point base.url in images/x/image.json at a disk image',
    );
    expect(existsSync(out('text'))).toBe(false);
  });

  it('names base.path and the image.json it is in when the local disk is not there', async () => {
    await expect(importBase({ path: 'disks/nope.qcow2' }, out('nopath'), { downloadCache: cache, log, workspaceRoot: dir, configFile: 'images/x/image.json' })).rejects.toThrow(
      `base.path disks/nope.qcow2 does not exist (resolved to ${dir}/disks/nope.qcow2). Fix base.path in images/x/image.json, or put the disk there.`,
    );
    expect(existsSync(out('nopath'))).toBe(false);
  });

  it('keeps an earlier base, its digest and what describes it when an import fails; replaces them when one succeeds', async () => {
    const output = out('earlier');
    const digestFile = path.join(path.dirname(output), 'base.digest');
    const manifest = path.join(path.dirname(output), 'base.manifest.json');
    await importBase({ empty: '64M' }, output, { downloadCache: cache, log, workspaceRoot: dir });
    writeFileSync(manifest, 'describes the 64M base');
    const before = { base: await sha256File(output), digest: readFileSync(digestFile, 'utf8') };

    await expect(importBase({ url: `${baseUrl}/nope.raw`, sha256: 'a'.repeat(64) }, output, { downloadCache: cache, log, workspaceRoot: dir, replaces: [manifest] })).rejects.toThrow('404');
    expect({ base: await sha256File(output), digest: readFileSync(digestFile, 'utf8') }).toEqual(before);
    expect(readFileSync(manifest, 'utf8')).toBe('describes the 64M base');

    await importBase({ empty: '32M' }, output, { downloadCache: cache, log, workspaceRoot: dir, replaces: [manifest] });
    expect(existsSync(manifest)).toBe(false);
    expect(readFileSync(digestFile, 'utf8')).not.toBe(before.digest);
  });

  it('creates a blank disk of the given size', async () => {
    await importBase({ empty: '64M' }, out('blank'), { downloadCache: cache, log, workspaceRoot: dir });
    const { stdout } = await execa('qemu-img', ['info', '--output=json', out('blank')]);
    expect(JSON.parse(stdout)).toMatchObject({ format: 'qcow2', 'virtual-size': 64 * 1024 * 1024 });
  });
});
