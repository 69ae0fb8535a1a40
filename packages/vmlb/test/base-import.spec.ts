import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { createReadStream, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';
import { importBase } from '../src/lib/build/base-import';
import { ROOT_DIGEST, chainDigest, sha256File } from '../src/lib/cache-identity/digest';
import { deadPort, startTestProxy, type TestProxy } from './support/connect-proxy';

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
    await execa('sh', [
      '-c',
      `printf 'vmlb base disk' | dd of=${raw} conv=notrunc status=none && head -c 1048576 /dev/urandom | dd of=${raw} bs=1M seek=3 conv=notrunc status=none`,
    ]);
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
      importBase({ url: `${baseUrl}/nope.raw`, sha256: 'a'.repeat(64) }, out('missing'), {
        downloadCache: cache,
        log,
        workspaceRoot: dir,
        configFile: 'images/x/image.json',
      }),
    ).rejects.toThrow(`Cannot download ${baseUrl}/nope.raw: the server answered 404 Not Found. Check base.url in images/x/image.json.`);
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    await expect(
      importBase({ url: `http://127.0.0.1:${port}/disk.raw`, sha256: 'a'.repeat(64) }, out('down'), { downloadCache: cache, log, workspaceRoot: dir }),
    ).rejects.toThrow(
      new RegExp(
        `^Cannot download http://127\\.0\\.0\\.1:${port}/disk\\.raw: .*ECONNREFUSED.*\\. Check base\\.url in image\\.json, and that this host reaches the server`,
      ),
    );
    expect(existsSync(out('missing'))).toBe(false);
  });

  it('refuses a download cut short, naming the URL, and keeps nothing', async () => {
    const downloads = path.join(dir, 'truncated-cache');
    const failure = importBase({ url: `${baseUrl}/truncated.raw`, sha256: 'a'.repeat(64) }, out('truncated'), {
      downloadCache: downloads,
      log,
      workspaceRoot: dir,
    });
    await expect(failure).rejects.toThrow(
      new RegExp(
        `^Cannot download ${baseUrl.replace(/\./g, '\\.')}/truncated\\.raw: the transfer stopped after \\d+ of 8388608 bytes \\(.+\\)\\. Nothing was kept; build again to retry\\.$`,
      ),
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
    await expect(
      importBase({ url: `file://${text}`, sha256 }, out('text'), { downloadCache: cache, log, workspaceRoot: dir, configFile: 'images/x/image.json' }),
    ).rejects.toThrow(
      'notes.txt.gz is not a disk image: qemu-img sees no image format in it, and as a raw disk its 10 bytes are not a whole number of 512-byte sectors. ' +
        'Point base.url in images/x/image.json at a disk image',
    );
    expect(existsSync(out('text'))).toBe(false);
  });

  it('names base.path and the image.json it is in when the local disk is not there', async () => {
    await expect(
      importBase({ path: 'disks/nope.qcow2' }, out('nopath'), { downloadCache: cache, log, workspaceRoot: dir, configFile: 'images/x/image.json' }),
    ).rejects.toThrow(
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

    await expect(
      importBase({ url: `${baseUrl}/nope.raw`, sha256: 'a'.repeat(64) }, output, { downloadCache: cache, log, workspaceRoot: dir, replaces: [manifest] }),
    ).rejects.toThrow('404');
    expect({ base: await sha256File(output), digest: readFileSync(digestFile, 'utf8') }).toEqual(before);
    expect(readFileSync(manifest, 'utf8')).toBe('describes the 64M base');

    await importBase({ empty: '32M' }, output, { downloadCache: cache, log, workspaceRoot: dir, replaces: [manifest] });
    expect(existsSync(manifest)).toBe(false);
    expect(readFileSync(digestFile, 'utf8')).not.toBe(before.digest);
  });

  describe('a base that names other files of this host (issue 18.6)', () => {
    // The canary stands for /etc/shadow or a block device: its bytes must never reach a base.
    const canary = path.join(dir, 'canary.raw');
    const canaryText = 'CANARY-7f3a-host-secret';
    const holdsCanary = (folder: string) =>
      existsSync(folder) && readdirSync(folder).some((name) => readFileSync(path.join(folder, name)).includes(canaryText));
    const refusal = (name: string, what: RegExp) =>
      new RegExp(
        `^${name.replace(/\./g, '\\.')} is ${what.source}: vmlb imports standalone disks only, since opening it would read another file on this host into the base, ` +
          `which the caches then share\\. Flatten it first, on a machine that has the files it names: qemu-img convert -O qcow2 <in> <out>, and point base\\.(path|url) in images/x/image\\.json at the result\\.$`,
      );
    beforeAll(async () => {
      writeFileSync(canary, Buffer.alloc(1024 * 1024, `${canaryText}\n`));
      await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', canary, '-F', 'raw', path.join(dir, 'backed.qcow2'), '1M']);
      await execa('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `data_file=${canary},data_file_raw=on`, path.join(dir, 'data-file.qcow2'), '1M']);
      await execa('qemu-img', ['convert', '-f', 'raw', '-O', 'vmdk', canary, path.join(dir, 'parent.vmdk')]);
      await execa('qemu-img', ['create', '-q', '-f', 'vmdk', '-b', path.join(dir, 'parent.vmdk'), '-F', 'vmdk', path.join(dir, 'child.vmdk')]);
      writeFileSync(
        path.join(dir, 'descriptor.vmdk'),
        `# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\nRW 2048 FLAT "${canary}" 0\n`,
      );
    });
    const options = (name: string) => ({ downloadCache: path.join(dir, `${name}-cache`), log, workspaceRoot: dir, configFile: 'images/x/image.json' });

    it('a qcow2 whose backing file is a host file, by path: refused with the flatten command, nothing of the backing file imported', async () => {
      await expect(importBase({ path: 'backed.qcow2' }, out('backed-path'), options('backed-path'))).rejects.toThrow(
        refusal('backed.qcow2', new RegExp(`a qcow2 image with a backing file \\("${canary.replace(/\./g, '\\.')}"\\)`)),
      );
      expect(readdirSync(path.dirname(out('backed-path')))).toEqual([]);
    });

    it('the same qcow2 by URL with its matching sha256: refused, nothing of the backing file in dist', async () => {
      const sha256 = await sha256File(path.join(dir, 'backed.qcow2'));
      await expect(importBase({ url: `${baseUrl}/backed.qcow2`, sha256 }, out('backed-url'), options('backed-url'))).rejects.toThrow(
        refusal('backed.qcow2', /a qcow2 image with a backing file .*/),
      );
      expect(readdirSync(path.dirname(out('backed-url')))).toEqual([]);
      expect(holdsCanary(path.dirname(out('backed-url')))).toBe(false);
      expect(holdsCanary(path.join(dir, 'backed-url-cache'))).toBe(false);
    });

    it('a qcow2 with an external data file: refused', async () => {
      await expect(importBase({ path: 'data-file.qcow2' }, out('data-file'), options('data-file'))).rejects.toThrow(
        refusal('data-file.qcow2', /a qcow2 image whose data is in an external data file \(data-file\)/),
      );
      expect(holdsCanary(path.dirname(out('data-file')))).toBe(false);
    });

    it('a sparse vmdk with a parent, and a vmdk descriptor whose extent is a host file: refused', async () => {
      await expect(importBase({ path: 'child.vmdk' }, out('vmdk-child'), options('vmdk-child'))).rejects.toThrow(
        refusal('child.vmdk', /a vmdk image with a parent \(backing\) file .*/),
      );
      await expect(importBase({ path: 'descriptor.vmdk' }, out('vmdk-descriptor'), options('vmdk-descriptor'))).rejects.toThrow(
        refusal('descriptor.vmdk', /a vmdk descriptor whose data is in extent files it names \(or an old VMware format\)/),
      );
      expect(holdsCanary(path.dirname(out('vmdk-child')))).toBe(false);
      expect(holdsCanary(path.dirname(out('vmdk-descriptor')))).toBe(false);
    });

    it('a standalone qcow2 and a standalone sparse vmdk still import, opened with their own format', async () => {
      await importBase({ path: 'parent.vmdk' }, out('vmdk-ok'), options('vmdk-ok'));
      await expect(execa('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', out('vmdk-ok'), canary])).resolves.toMatchObject({ exitCode: 0 });
      await execa('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, path.join(dir, 'standalone.qcow2')]);
      await importBase({ path: 'standalone.qcow2' }, out('qcow2-ok'), options('qcow2-ok'));
      await sameContent(out('qcow2-ok'));
    });
  });

  it('re-hashes a cached download before using it: a tampered copy is discarded and downloaded again, saying so (issue 18.7)', async () => {
    const downloads = path.join(dir, 'tamper-cache');
    const sha256 = await sha256File(raw);
    await importBase({ url: `${baseUrl}/disk.raw`, sha256 }, out('tamper-1'), { downloadCache: downloads, log, workspaceRoot: dir });
    const [cached] = readdirSync(downloads);
    const bytes = readFileSync(path.join(downloads, cached));
    bytes.write('tampered', 0);
    writeFileSync(path.join(downloads, cached), bytes);
    requests = [];
    logs.length = 0;
    await importBase({ url: `${baseUrl}/disk.raw`, sha256 }, out('tamper-2'), { downloadCache: downloads, log, workspaceRoot: dir });
    await sameContent(out('tamper-2'));
    expect(requests).toEqual(['/disk.raw']);
    expect(logs.join('\n')).toContain(
      `vmlb: disk.raw in the download cache (${path.join(downloads, cached)}) does not have the sha256 ${sha256} it is filed under ` +
        `(it has ${createHash('sha256').update(bytes).digest('hex')}): discarded it, downloading again`,
    );
    expect(await sha256File(path.join(downloads, cached))).toBe(sha256);
    // A good cached copy is still used without a download, after its sha256 is checked.
    requests = [];
    await importBase({ url: `${baseUrl}/disk.raw`, sha256 }, out('tamper-3'), { downloadCache: downloads, log, workspaceRoot: dir });
    expect(requests).toEqual([]);
  });

  describe('through https_proxy / http_proxy (issue 18.8)', () => {
    let proxy: TestProxy;
    let hidden: string;
    beforeAll(async () => {
      // A port nothing listens on: only the proxy forwards it, to the test's HTTP server.
      hidden = `127.0.0.1:${await deadPort()}`;
      proxy = await startTestProxy({ [hidden]: new URL(baseUrl).host });
    });
    afterAll(() => proxy?.close());

    it('downloads a base from a host only the proxy reaches', async () => {
      const sha256 = await sha256File(raw);
      const env = { http_proxy: proxy.url, no_proxy: 'localhost,.example.internal' };
      await importBase({ url: `http://${hidden}/disk.raw`, sha256 }, out('proxied'), {
        downloadCache: path.join(dir, 'proxy-cache'),
        log,
        workspaceRoot: dir,
        env,
      });
      await sameContent(out('proxied'));
      expect(proxy.requests.length).toBe(1);
      expect(proxy.requests[0]).toMatch(new RegExp(`^(CONNECT ${hidden}|GET http://${hidden}/disk\\.raw)$`));
      expect(requests).toEqual(['/disk.raw']);
    });

    it('goes direct to a host no_proxy names (here: nothing answers), and without a proxy at all', async () => {
      const sha256 = await sha256File(raw);
      for (const env of [{ HTTP_PROXY: proxy.url, NO_PROXY: '127.0.0.1' }, {}]) {
        proxy.requests.length = 0;
        await expect(
          importBase({ url: `http://${hidden}/disk.raw`, sha256 }, out('unproxied'), {
            downloadCache: path.join(dir, 'proxy-cache-2'),
            log,
            workspaceRoot: dir,
            env,
          }),
        ).rejects.toThrow(/ECONNREFUSED/);
        expect(proxy.requests).toEqual([]);
      }
    });
  });

  it('creates a blank disk of the given size', async () => {
    await importBase({ empty: '64M' }, out('blank'), { downloadCache: cache, log, workspaceRoot: dir });
    const { stdout } = await execa('qemu-img', ['info', '--output=json', out('blank')]);
    expect(JSON.parse(stdout)).toMatchObject({ format: 'qcow2', 'virtual-size': 64 * 1024 * 1024 });
  });
});
