import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { type RunningCacheServer, startCacheServer } from '../../../tools/cache-server/src/server';
import { NxWorkspace, cacheHits, remoteCacheHits, tasksRun } from './support/nx-workspace';
import { addDevDependency, adoptRepoLockfile, installVmlbCopy } from './support/workspace-life';

const TOKEN = 'read-write-token';
const TINY_TASKS = ['image-tiny:base', 'tiny-00_disk:build', 'tiny-10_hello:build', 'tiny-20_motd:build'];
const DAY = 86_400;

/**
 * A layer's cache key through ordinary workspace life: lockfile changes,
 * vmlb releases, a usual nx.json, edits elsewhere in the repository, and
 * the knobs that rebuild on purpose. Every workspace here has a lockfile
 * of its own, as a user's does.
 */
describe("layer cache keys through a workspace's life", () => {
  const workspaces: NxWorkspace[] = [];
  const workspace = (options: ConstructorParameters<typeof NxWorkspace>[0] = {}): NxWorkspace => {
    const created = new NxWorkspace({ images: ['tiny'], ...options });
    adoptRepoLockfile(created);
    workspaces.push(created);
    return created;
  };
  /** The task hash of every layer of an image, as `layers --json` prints them. */
  const hashes = async (ws: NxWorkspace, image = 'tiny', env: Record<string, string> = {}): Promise<Record<string, string>> => {
    const output = await ws.nxOk(['run', `image-${image}:layers`, '--json'], { env });
    const rows = JSON.parse(output.slice(output.indexOf('\n['), output.lastIndexOf(']') + 1)) as Array<{ name: string; hash?: string }>;
    return Object.fromEntries(rows.map((row) => [row.name, row.hash ?? '-']));
  };
  const edit = (ws: NxWorkspace, file: string, change: (text: string) => string) => writeFileSync(ws.path(file), change(readFileSync(ws.path(file), 'utf8')));

  afterAll(() => workspaces.splice(0).forEach((ws) => ws.remove()));

  describe('two clones at different paths sharing one remote cache', () => {
    let server: RunningCacheServer;
    let serverDir: string;
    beforeAll(async () => {
      serverDir = mkdtempSync(path.join(tmpdir(), 'vmlb-remote-cache-'));
      server = await startCacheServer({ dir: serverDir, port: 0, readWriteTokens: [TOKEN], readOnlyTokens: [], log: () => undefined });
    });
    afterAll(async () => {
      await server.close().catch(() => undefined);
      rmSync(serverDir, { recursive: true, force: true });
    });

    it('restores every layer in a clone whose lockfile and vmlb release differ, with equal task hashes', async () => {
      const env = { NX_SELF_HOSTED_REMOTE_CACHE_SERVER: server.url, NX_SELF_HOSTED_REMOTE_CACHE_ACCESS_TOKEN: TOKEN };
      const a = workspace();
      await a.commitAll();
      expect(tasksRun(await a.nxOk(['build', 'image-tiny'], { env }))).toEqual([...TINY_TASKS, 'image-tiny:build'].sort());

      const b = await a.clone();
      workspaces.push(b);
      addDevDependency(b, 'left-pad', '1.3.0');
      installVmlbCopy(b, { version: '9.9.9' });
      const output = await b.nxOk(['build', 'image-tiny'], { env });
      expect(remoteCacheHits(output)).toEqual(TINY_TASKS);
      expect(tasksRun(output)).toEqual(['image-tiny:build']);
      expect(await hashes(b)).toEqual(await hashes(a));
    });
  });

  describe('one workspace, edited', () => {
    let ws: NxWorkspace;
    let built: Record<string, string>;
    beforeAll(async () => {
      ws = workspace();
      cpSync(ws.path('images/tiny'), ws.path('images/other'), { recursive: true });
      mkdirSync(ws.path('libs/web'), { recursive: true });
      writeFileSync(ws.path('libs/web/package.json'), JSON.stringify({ name: 'web', version: '1.0.0' }));
      writeFileSync(ws.path('libs/web/index.js'), 'module.exports = 1;\n');
      writeFileSync(ws.path('README.md'), '# workspace\n');
      await ws.nxOk(['build', 'image-tiny']);
      built = await hashes(ws);
    });

    it('keeps every layer hash when anything outside the image changes: a README, another image, a JS project, the lockfile', async () => {
      writeFileSync(ws.path('README.md'), '# workspace, edited\n');
      edit(ws, 'images/other/10_hello/build-layer', (text) => `${text}echo other\n`);
      writeFileSync(ws.path('libs/web/index.js'), 'module.exports = 2;\n');
      addDevDependency(ws, 'left-pad', '1.3.0');
      expect(await hashes(ws)).toEqual(built);
      expect(cacheHits(await ws.nxOk(['build', 'image-tiny']))).toEqual(TINY_TASKS);
    });

    it('rebuilds a layer whose script changed by one byte, and the layers above it, not those below', async () => {
      edit(ws, 'images/tiny/10_hello/build-layer', (text) => `${text} `);
      const after = await hashes(ws);
      expect(after.base).toBe(built.base);
      expect(after['00_disk']).toBe(built['00_disk']);
      expect(after['10_hello']).not.toBe(built['10_hello']);
      const output = await ws.nxOk(['build', 'image-tiny']);
      expect(tasksRun(output)).toEqual(['image-tiny:build', 'tiny-10_hello:build', 'tiny-20_motd:build']);
      expect(cacheHits(output)).toEqual(['image-tiny:base', 'tiny-00_disk:build']);
    });

    it("rebuilds the whole chain, base included, when vmlb's layer format changes", async () => {
      installVmlbCopy(ws, { layerFormat: 999 });
      const output = await ws.nxOk(['build', 'image-tiny']);
      expect(tasksRun(output)).toEqual([...TINY_TASKS, 'image-tiny:build'].sort());
    });
  });

  describe('rebuilding on purpose', () => {
    it('rebuilds a # rebuild-every layer once a period, the same within it', async () => {
      const ws = workspace();
      edit(ws, 'images/tiny/10_hello/build-layer', (text) => text.replace('set -eu\n', 'set -eu\n# rebuild-every 1d\n'));
      const at = (seconds: number) => ({ VMLB_NOW: String(seconds) });
      const monday = 20_000 * DAY;
      await ws.nxOk(['build', 'image-tiny'], { env: at(monday + 100) });
      expect(cacheHits(await ws.nxOk(['build', 'image-tiny'], { env: at(monday + DAY - 1) }))).toEqual(TINY_TASKS);
      const nextDay = await ws.nxOk(['build', 'image-tiny'], { env: at(monday + DAY) });
      expect(tasksRun(nextDay)).toEqual(['image-tiny:build', 'tiny-10_hello:build', 'tiny-20_motd:build']);
      expect(await ws.nxOk(['run', 'image-tiny:layers'], { env: at(monday + DAY) })).toMatch(/10_hello\s+build-layer\s+rebuild-every 1d/);
    });

    it("rebuilds every layer of an image whose cacheSalt changes, not its base and not another image's layers", async () => {
      const ws = workspace();
      cpSync(ws.path('images/tiny'), ws.path('images/other'), { recursive: true });
      await ws.nxOk(['run-many', '-t', 'build', '-p', 'image-tiny', 'image-other']);
      const other = await hashes(ws, 'other');
      edit(ws, 'images/tiny/image.json', (text) => text.replace('"base"', '"cacheSalt": "2026-12", "base"'));
      expect(await hashes(ws, 'other')).toEqual(other);
      const output = await ws.nxOk(['build', 'image-tiny']);
      expect(tasksRun(output)).toEqual(['image-tiny:build', 'tiny-00_disk:build', 'tiny-10_hello:build', 'tiny-20_motd:build']);
      expect(cacheHits(output)).toEqual(['image-tiny:base']);
      expect(await ws.nxOk(['run', 'image-tiny:layers'])).toContain("Every layer's cache key includes image.json's cacheSalt '2026-12'.");
    });
  });

  describe("a usual nx.json: build defaults for the workspace's JS projects", () => {
    const usual = {
      namedInputs: { default: ['{projectRoot}/**/*'], production: ['default', '!{projectRoot}/**/*.spec.ts'] },
      targetDefaults: { build: { dependsOn: ['^build'], inputs: ['production', '^production'], cache: true } },
    };

    it('warns and stops every layer build with the fix until vmlb:init shields the layers, then keeps the chain and its cache', async () => {
      const ws = workspace({ nxJson: usual });
      const problem = 'nx.json: targetDefaults["build"] sets cache, dependsOn, inputs for the build targets vmlb infers';
      expect(await ws.nxOk(['show', 'projects'])).toContain(problem);
      const refused = await ws.nx(['build', 'image-tiny']);
      expect(refused.exitCode).not.toBe(0);
      expect(refused.output).toContain(`vmlb: ${problem}`);
      expect(refused.output).toContain('npx nx g vmlb:init adds them');
      expect(existsSync(ws.path('dist'))).toBe(false);

      await ws.nxOk(['g', 'vmlb:init']);
      const nxJson = JSON.parse(readFileSync(ws.path('nx.json'), 'utf8'));
      expect(nxJson.targetDefaults.build).toEqual(usual.targetDefaults.build);
      expect(await ws.nxOk(['build', 'image-tiny'])).toContain('Successfully ran target build for project image-tiny');
      edit(ws, 'images/tiny/00_disk/modify-disk', (text) => `${text}\n`);
      const output = await ws.nxOk(['build', 'image-tiny']);
      expect(tasksRun(output)).toEqual(['image-tiny:build', 'tiny-00_disk:build', 'tiny-10_hello:build', 'tiny-20_motd:build']);
      expect(cacheHits(await ws.nxOk(['build', 'image-tiny']))).toEqual(TINY_TASKS);
    });
  });

  describe('warnings about the image folder', () => {
    it('reach the user with the Nx daemon off and on', async () => {
      const ws = workspace();
      ws.script('images/tiny/1_typo/build-layer', 'true');
      const warning = 'images/tiny/1_typo looks like a layer folder but is not one';
      expect(await ws.nxOk(['show', 'projects'])).toContain(warning);
      await ws.commitAll();
      const daemon = { NX_DAEMON: 'true' };
      try {
        expect(await ws.nxOk(['build', 'image-tiny'], { env: daemon })).toContain(warning);
        expect(await ws.nxOk(['run', 'image-tiny:layers'], { env: daemon })).toContain(warning);
      } finally {
        await ws.nx(['daemon', '--stop'], { env: daemon });
      }
    });
  });
});
