import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';
import { type RunningCacheServer, startCacheServer } from '../../../tools/cache-server/src/server';
import { sha256File } from '../src/lib/cache-identity/digest';
import { findLeftovers, describeLeftovers } from './support/host-state';
import { NxWorkspace, remoteCacheHits } from './support/nx-workspace';

const CHAIN = ['base', '00_disk', '10_hello', '20_motd', '30_edit'];
/** A layer that adds, changes, removes, links and chmods files. */
const EDIT_LAYER = 'images/tiny/30_edit/build-layer';
const EDIT_SCRIPT = ['echo new > /etc/added', 'echo more >> /etc/motd', 'rm /etc/hello', 'ln -s motd /etc/motd.link', 'chmod 600 /etc/hostname'];

interface Row {
  name: string;
  kind: string;
  hints: string[];
  taskId: string;
  hash: string | null;
  state: string;
  note?: string;
  digest: string | null;
  fileSize: number | null;
  virtualSize: number | null;
  lastBuild: { seconds: number; finishedAt: string; host: string } | null;
  changes: string | null;
}

/**
 * `nx run image-<x>:layers`, the per-layer manifest and `diff`, on the tiny
 * busybox image with one more layer that adds, changes, removes, links and
 * chmods files.
 */
describe('seeing what each layer is and what it changed', () => {
  let workspace: NxWorkspace;
  let server: RunningCacheServer | undefined;
  let serverDir: string | undefined;
  const others: NxWorkspace[] = [];
  const dist = (ws: NxWorkspace, name: string) => ws.path('dist/images/tiny', name);

  const layers = async (ws: NxWorkspace, env: Record<string, string> = {}): Promise<Row[]> => {
    const output = await ws.nxOk(['run', 'image-tiny:layers', '--json'], { env });
    const json = output.slice(output.indexOf('\n['), output.lastIndexOf(']') + 1);
    return JSON.parse(json) as Row[];
  };
  const states = (rows: Row[]) => rows.map((row) => [row.name, row.state]);
  const chainSums = async (ws: NxWorkspace) => Promise.all(CHAIN.map((layer) => sha256File(dist(ws, `${layer}.qcow2`))));
  const tmpEntries = (prefix: string) => readdirSync(tmpdir()).filter((entry) => entry.startsWith(prefix));

  beforeAll(() => {
    workspace = new NxWorkspace({ images: ['tiny'] });
    workspace.script(EDIT_LAYER, ...EDIT_SCRIPT);
  });

  afterAll(async () => {
    await server?.close().catch(() => undefined);
    if (serverDir) rmSync(serverDir, { recursive: true, force: true });
    for (const ws of [workspace, ...others]) {
      const leftovers = describeLeftovers(await findLeftovers(ws.root));
      if (leftovers) throw new Error(`not removing ${ws.root}, which has leftovers:\n${leftovers}`);
      ws.remove();
    }
  });

  it('lists every layer as not built before the first build, and builds nothing to say so', async () => {
    const rows = await layers(workspace);
    expect(rows.map((row) => [row.name, row.kind, row.state])).toEqual([
      ['base', 'base', 'not built'],
      ['00_disk', 'modify-disk', 'not built'],
      ['10_hello', 'build-layer', 'not built'],
      ['20_motd', 'build-layer', 'not built'],
      ['30_edit', 'build-layer', 'not built'],
    ]);
    expect(rows[0].hash).toMatch(/^\d+$/);
    // Above a layer that will be built, the hash depends on a digest nobody has yet.
    expect(rows.slice(1).map((row) => [row.hash, row.note])).toEqual(rows.slice(1).map(() => [null, 'built after base']));
    expect(readdirSync(workspace.path()).includes('dist')).toBe(false);
  });

  it('shows each layer built here with the task hash Nx built it under, its sizes, build time and changes', async () => {
    await workspace.nxOk(['build', 'image-tiny']);
    const rows = await layers(workspace);
    expect(states(rows)).toEqual(CHAIN.map((name) => [name, 'built here']));
    for (const row of rows) {
      // The build record holds NX_TASK_HASH as Nx passed it to the build: the table computed the same hash.
      const manifest = JSON.parse(readFileSync(dist(workspace, `${row.name}.manifest.json`), 'utf8'));
      expect([row.name, row.hash]).toEqual([row.name, manifest.build.taskHash]);
      expect(row.digest).toBe(readFileSync(dist(workspace, `${row.name}.digest`), 'utf8').trim());
      expect(row.virtualSize).toBe(64 * 1024 * 1024);
      expect(row.fileSize).toBeGreaterThan(0);
      expect(row.lastBuild?.seconds).toBeGreaterThanOrEqual(0);
    }
    expect(rows.map((row) => row.changes)).toEqual(['base disk', 'disk changed below the filesystem (no file list)', '+1 files', '+1 files', '+2 ~2 -1 files']);

    const table = await workspace.nxOk(['run', 'image-tiny:layers']);
    expect(table).toMatch(/Layer\s+Kind\s+Hints\s+State\s+Task hash\s+Digest\s+Size\s+Disk\s+Last build\s+Changes/);
    expect(table).toMatch(
      new RegExp(`30_edit\\s+build-layer\\s+-\\s+built here\\s+${rows[4].hash}\\s+${rows[4].digest!.slice(0, 12)}\\s+.*64 MiB.*\\+2 ~2 -1 files`),
    );
  });

  it("writes a manifest that lists exactly what the layer's script changed", () => {
    const manifest = JSON.parse(readFileSync(dist(workspace, '30_edit.manifest.json'), 'utf8'));
    expect(manifest.kind).toBe('build-layer');
    expect(manifest.files).toEqual({
      added: [
        { path: '/etc/added', size: 4, type: 'file' },
        { path: '/etc/motd.link', size: 4, type: 'symlink' },
      ],
      modified: [
        { path: '/etc/hostname', size: 5, type: 'file' },
        { path: '/etc/motd', size: 37, type: 'file' },
      ],
      removed: [{ path: '/etc/hello', size: 34, type: 'file' }],
      counts: { added: 2, modified: 2, removed: 1 },
      truncated: false,
    });
    expect(manifest.packages).toBeUndefined();
  });

  it('says which layers an edit makes stale, and finds every layer in the local cache once dist/ is gone', async () => {
    const built = await layers(workspace);
    const script = workspace.path('images/tiny/20_motd/build-layer');
    const original = readFileSync(script, 'utf8');
    writeFileSync(script, `${original}echo edited >> /etc/motd\n`);
    const edited = await layers(workspace);
    expect(states(edited)).toEqual([
      ['base', 'built here'],
      ['00_disk', 'built here'],
      ['10_hello', 'built here'],
      ['20_motd', 'not built'],
      ['30_edit', 'not built'],
    ]);
    expect(edited[3].hash).not.toBe(built[3].hash);
    expect(edited[4]).toMatchObject({ hash: null, note: 'built after 20_motd' });
    writeFileSync(script, original);

    rmSync(workspace.path('dist'), { recursive: true });
    const afterDelete = await layers(workspace);
    expect(states(afterDelete)).toEqual(CHAIN.map((name) => [name, 'in local cache']));
    // The same hashes: each computed with the digest its parent will have once restored.
    expect(afterDelete.map((row) => row.hash)).toEqual(built.map((row) => row.hash));
    expect(afterDelete.map((row) => row.changes)).toEqual(built.map((row) => row.changes));
    expect(readdirSync(workspace.path()).includes('dist')).toBe(false);

    await workspace.nxOk(['build', 'image-tiny']);
    expect(states(await layers(workspace))).toEqual(CHAIN.map((name) => [name, 'built here']));
  });

  it('finds layers in the remote cache, and shows them restored here after a remote-cache hit', async () => {
    serverDir = mkdtempSync(path.join(tmpdir(), 'vmlb-remote-cache-'));
    server = await startCacheServer({ dir: serverDir, port: 0, readWriteTokens: ['rw'], log: () => undefined });
    const remote = { NX_SELF_HOSTED_REMOTE_CACHE_SERVER: server.url, NX_SELF_HOSTED_REMOTE_CACHE_ACCESS_TOKEN: 'rw' };
    // The first workspace's cache entries go up as they are (a rebuild under the server uploads them).
    rmSync(workspace.path('dist'), { recursive: true });
    rmSync(workspace.path('.nx/cache'), { recursive: true });
    await workspace.nxOk(['build', 'image-tiny'], { env: remote });
    const built = await layers(workspace, remote);

    const other = new NxWorkspace({ images: ['tiny'] });
    others.push(other);
    other.script(EDIT_LAYER, ...EDIT_SCRIPT);
    const before = await layers(other, remote);
    expect(states(before)).toEqual([
      ['base', 'in remote cache'],
      ['00_disk', 'unknown'],
      ['10_hello', 'unknown'],
      ['20_motd', 'unknown'],
      ['30_edit', 'unknown'],
    ]);
    expect(before[0].hash).toBe(built[0].hash);
    expect(before[1].note).toBe('its hash needs the digest of base, which only the remote cache has');
    // --remote=false never asks the server.
    const offline = await other.nxOk(['run', 'image-tiny:layers', '--json', '--remote=false'], { env: remote });
    expect(offline).toContain('"state": "not built"');

    const output = await other.nxOk(['build', 'image-tiny'], { env: remote });
    expect(remoteCacheHits(output)).toHaveLength(5);
    const after = await layers(other, remote);
    expect(states(after)).toEqual(CHAIN.map((name) => [name, 'restored here']));
    expect(after.map((row) => row.hash)).toEqual(built.map((row) => row.hash));
    expect(after.map((row) => row.lastBuild?.finishedAt)).toEqual(built.map((row) => row.lastBuild?.finishedAt));
  });

  describe('diff', () => {
    let sums: string[];
    let diffDirsBefore: Set<string>;

    beforeEach(async () => {
      sums = await chainSums(workspace);
      diffDirsBefore = new Set(tmpEntries('vmlb-diff-'));
    });

    afterEach(async () => {
      // Read-only: not one byte of any layer changed, and nothing stays attached.
      expect(await chainSums(workspace)).toEqual(sums);
      expect(describeLeftovers(await findLeftovers(workspace.root))).toBe('');
      expect(tmpEntries('vmlb-diff-').filter((entry) => !diffDirsBefore.has(entry))).toEqual([]);
      const { stdout } = await execa('findmnt', ['-rn', '-o', 'TARGET']);
      expect(stdout.split('\n').filter((target) => target.includes('vmlb-diff-'))).toEqual([]);
    });

    it('prints what changed between the last layer and the one below it, like virt-diff', async () => {
      const output = await workspace.nxOk(['run', 'image-tiny:diff']);
      expect(output).toContain('vmlb: image tiny, 20_motd (a) -> 30_edit (b), both read-only');
      expect(output).toContain('Files: 2 added, 1 removed, 2 changed');
      const lines = output.split('\n').filter((line) => /^[+~-] /.test(line));
      expect(lines).toEqual([
        '+ file          4 B  /etc/added',
        '- file         34 B  /etc/hello',
        '~ file          5 B  /etc/hostname  (mode 0644 -> 0600)',
        '~ file         37 B  /etc/motd  (content, size 32 B -> 37 B)',
        '+ symlink            /etc/motd.link',
      ]);
      expect(output).toContain('Packages: no package database (dpkg) on either side');
    });

    it('compares any two layers, as JSON', async () => {
      const output = await workspace.nxOk(['run', 'image-tiny:diff', '--from=00_disk', '--to=30_edit', '--json']);
      const diff = JSON.parse(output.slice(output.indexOf('\n{'), output.lastIndexOf('}') + 1));
      expect(diff).toMatchObject({ image: 'tiny', from: '00_disk', to: '30_edit' });
      expect(diff.files.added.map((entry: { path: string }) => entry.path)).toEqual(['/etc/added', '/etc/motd', '/etc/motd.link']);
      expect(diff.files.removed).toEqual([]);
      expect(diff.files.changed).toEqual([{ path: '/etc/hostname', size: 5, type: 'file', changes: ['mode'], mode: { from: '0644', to: '0600' } }]);
    });

    it('opens a shell with both roots mounted read-only as a/ and b/, and removes everything when it exits', async () => {
      const shell = workspace.path('probe-shell');
      writeFileSync(
        shell,
        [
          '#!/bin/sh',
          'echo "shell in $(pwd) comparing $VMLB_DIFF_A and $VMLB_DIFF_B"',
          'ls a/etc | tr "\\n" " "; echo',
          'ls b/etc | tr "\\n" " "; echo',
          'if touch b/etc/x 2>/dev/null; then echo "b is writable"; else echo "b is read-only"; fi',
          '',
        ].join('\n'),
        { mode: 0o755 },
      );
      const output = await workspace.nxOk(['run', 'image-tiny:diff', '--shell', '--from=10_hello'], { env: { SHELL: shell } });
      expect(output).toMatch(/shell in \/tmp\/vmlb-diff-\w+ comparing 10_hello and 30_edit/);
      expect(output).toContain('a/ is 10_hello, b/ is 30_edit, both read-only');
      expect(output).toMatch(/^hello hostname vmlb-base\s*$/m);
      expect(output).toMatch(/^added hostname motd motd.link vmlb-base\s*$/m);
      expect(output).toContain('b is read-only');
    });

    it('says clearly when a side has no filesystem, or names a layer that does not exist', async () => {
      const noFilesystem = await workspace.nx(['run', 'image-tiny:diff', '--from=base', '--to=10_hello']);
      expect(noFilesystem.exitCode).not.toBe(0);
      expect(noFilesystem.output).toContain('Image tiny at base has no filesystem to compare at the whole disk');
      const unknown = await workspace.nx(['run', 'image-tiny:diff', '--from=15_nope']);
      expect(unknown.exitCode).not.toBe(0);
      expect(unknown.output).toContain("--from '15_nope' is not a layer of image tiny; its layers are: base, 00_disk, 10_hello, 20_motd, 30_edit.");
    });
  });
});
