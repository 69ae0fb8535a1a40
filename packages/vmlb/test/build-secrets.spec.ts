import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { filesContaining } from './support/byte-search';
import { folderEntriesInImage, readFilesFromImage } from './support/disk-read';
import { describeLeftovers, findLeftovers } from './support/host-state';
import { NxWorkspace, cacheHits, tasksRun } from './support/nx-workspace';
import { layerRows } from './support/layer-rows';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const newSecret = () => `vmlb-test-secret-${randomBytes(16).toString('hex')}`;

/**
 * `# secret`: a value from VMLB_SECRET_<NAME> or a file, in the sandbox's
 * /run tmpfs while the script runs and nowhere else: not in the layer's
 * bytes (nor a flattened export), the key, the manifest, the listing, the
 * layer folder, Nx's cache or its stored terminal output. Real builds of
 * images/tiny, every file of the scratch workspace searched byte for byte.
 */
describe('build secrets', () => {
  let workspace: NxWorkspace;
  let outside: string;
  const first = newSecret();
  const dist = (file: string) => workspace.path('dist/images/tiny', file);
  /** Everything nx printed in this spec: no secret may be in it. */
  const printed: string[] = [];
  const nx = async (args: string[], env: Record<string, string> = {}) => {
    const run = await workspace.nx(args, { env });
    printed.push(run.output);
    return run;
  };
  const nxOk = async (args: string[], env: Record<string, string> = {}) => {
    const run = await nx(args, env);
    if (run.exitCode !== 0) throw new Error(`nx ${args.join(' ')} exited with ${run.exitCode}:\n${run.output}`);
    return run.output;
  };
  /** Files of the workspace (dist/, .nx/ with Nx's cache, its terminal outputs and the noshare store, the images) holding `value`. */
  const workspaceFilesWith = (value: string) => filesContaining(workspace.root, Buffer.from(value));
  /** What the two layers' scripts saw: the secret file's mode and owner, and its sha256. */
  const seen = async (qcow2: string) =>
    readFilesFromImage(qcow2, ['/etc/secret-mode-15_secret', '/etc/secret-sha256-15_secret', '/etc/secret-mode-17_shared', '/etc/secret-sha256-17_shared']);

  beforeAll(() => {
    workspace = new NxWorkspace({ images: ['tiny'] });
    outside = mkdtempSync(path.join(tmpdir(), 'vmlb-secret-file-'));
    const script = (hint: string) => [
      hint,
      'secret=/run/secrets/token',
      'stat -c "%a %u" "$secret" > "/etc/secret-mode-$VMLB_LAYER"',
      'sha256sum < "$secret" | cut -d" " -f1 > "/etc/secret-sha256-$VMLB_LAYER"',
      // Only the file holds it: not the environment.
      'if env | grep -qF "$(cat "$secret")"; then echo "the secret is in the environment" >&2; exit 1; fi',
    ];
    workspace.script('images/tiny/15_secret/build-layer', ...script('# secret token /run/secrets/token'));
    workspace.script('images/tiny/17_shared/build-layer', ...script('# secret token /run/secrets/token share'));
  });

  afterAll(() => {
    workspace?.remove();
    if (outside) rmSync(outside, { recursive: true, force: true });
  });

  it('1. stops before anything is attached when a secret has no value, naming the variables to set', async () => {
    const run = await nx(['build', 'image-tiny', '--output-style=static']);
    expect(run.exitCode).not.toBe(0);
    expect(run.output).toContain(
      'Layer 15_secret of image tiny: images/tiny/15_secret/build-layer: # secret token /run/secrets/token has no value: neither VMLB_SECRET_TOKEN nor VMLB_SECRET_TOKEN_FILE is set. ' +
        'Set VMLB_SECRET_TOKEN to the secret, or VMLB_SECRET_TOKEN_FILE to a file outside the workspace that holds it. Nothing was built.',
    );
    expect(run.output).not.toContain('15_secret of image tiny: in no cache, building');
    expect(readdirSync(dist('')).filter((file) => file.includes('15_secret'))).toEqual([]);
    expect(describeLeftovers(await findLeftovers(workspace.root))).toBe('');
  }, 300_000);

  it('2. gives the script the secret in /run, mode 0400, and keeps it out of every file the build leaves', async () => {
    const output = await nxOk(['build', 'image-tiny', '--output-style=static'], { VMLB_SECRET_TOKEN: first });
    expect(output).toContain("vmlb: secret token at /run/secrets/token (from VMLB_SECRET_TOKEN), for the script's run only");
    expect(await seen(dist('image.qcow2'))).toEqual({
      '/etc/secret-mode-15_secret': '400 0',
      '/etc/secret-sha256-15_secret': sha256(first),
      '/etc/secret-mode-17_shared': '400 0',
      '/etc/secret-sha256-17_shared': sha256(first),
    });
    // images/tiny has no /run: the tmpfs's mount point went with the script, and the manifest lists none of it.
    expect(await folderEntriesInImage(dist('15_secret.qcow2'), '/')).not.toContain('run');
    expect(readFileSync(dist('15_secret.manifest.json'), 'utf8')).not.toContain('/run');

    // Without the variable: the noshare layer comes back from this machine's store, the shared one from Nx's cache.
    await nxOk(['run', 'image-tiny:flatten', '--format', 'raw']);
    expect(existsSync(dist('export/raw/tiny.raw'))).toBe(true);
    const listing = await nxOk(['run', 'image-tiny:layers']);
    expect(listing).toMatch(/15_secret .*noshare, secret token \/run\/secrets\/token/);
    expect(listing).toMatch(/17_shared .*secret token \/run\/secrets\/token share/);

    // The search finds what the scripts wrote into the image (the sha256), in the layer, its noshare copy and the export...
    expect(workspaceFilesWith(sha256(first))).toEqual(
      expect.arrayContaining([dist('15_secret.qcow2'), dist('export/raw/tiny.raw'), expect.stringMatching(/\.nx\/cache\/vmlb-noshare\/.*\/layer$/)]),
    );
    // ... and the secret nowhere: layers, export, manifests, Nx's cache entries and terminal outputs, the layer folders.
    expect(workspaceFilesWith(first)).toEqual([]);
    expect(existsSync(workspace.path('.nx/workspace-data'))).toBe(true);
    expect(printed.filter((text) => text.includes(first))).toEqual([]);
  }, 300_000);

  it('3. keeps the value out of the key: the same task hashes with another secret, and nothing rebuilds', async () => {
    const second = newSecret();
    const hashes = async (value: string) =>
      (await layerRows(workspace, 'tiny', { VMLB_SECRET_TOKEN: value })).filter((row) => /^1[57]_/.test(row.name)).map((row) => [row.name, row.hash]);
    const withFirst = await hashes(first);
    expect(withFirst).toHaveLength(2);
    expect(withFirst.every(([, hash]) => typeof hash === 'string' && hash.length > 10)).toBe(true);
    expect(await hashes(second)).toEqual(withFirst);

    const output = await nxOk(['build', 'image-tiny', '--output-style=static'], { VMLB_SECRET_TOKEN: second });
    expect(cacheHits(output)).toContain('tiny-17_shared:build');
    expect(output).not.toContain('15_secret of image tiny: in no cache, building');
    expect((await seen(dist('image.qcow2')))['/etc/secret-sha256-15_secret']).toBe(sha256(first));
    expect(printed.filter((text) => text.includes(second))).toEqual([]);
  }, 300_000);

  it('4. reads the secret from the file VMLB_SECRET_<NAME>_FILE names, when told to build again', async () => {
    const third = newSecret();
    writeFileSync(path.join(outside, 'token'), third, { mode: 0o600 });
    const output = await nxOk(['run', 'tiny-15_secret:build', '--skip-nx-cache', '--excludeTaskDependencies', '--output-style=static'], {
      VMLB_SECRET_TOKEN_FILE: path.join(outside, 'token'),
    });
    expect(tasksRun(output)).toEqual(['tiny-15_secret:build']);
    expect(output).toContain('vmlb: secret token at /run/secrets/token (from VMLB_SECRET_TOKEN_FILE)');
    expect((await seen(dist('15_secret.qcow2')))['/etc/secret-sha256-15_secret']).toBe(sha256(third));
    expect(workspaceFilesWith(third)).toEqual([]);
    expect(printed.filter((text) => text.includes(third))).toEqual([]);
    expect(describeLeftovers(await findLeftovers(workspace.root))).toBe('');
  }, 300_000);
});
