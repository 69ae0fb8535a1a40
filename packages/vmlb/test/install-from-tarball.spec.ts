import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';
import { SHIELDED_EXECUTORS } from '../src/lib/cache-identity/target-defaults-guard';
import { readFilesFromImage } from './support/disk-read';
import { folderFingerprint, waitForCleanHost } from './support/host-state';
import { tearDownHost } from './support/host-teardown';
import { NxWorkspace, REPO_ROOT, cacheHits, tasksRun } from './support/nx-workspace';
import { type PackedPackage, UserWorkspace, packRepositoryPackages } from './support/user-workspace';

/** A usual Nx 24 workspace before vmlb: target defaults for every `build`, named inputs, and a library. */
const USER_FILES: Record<string, string> = {
  'package.json': JSON.stringify({ name: 'acme', version: '0.0.0', private: true, devDependencies: { nx: '24.0.0', '@nx/devkit': '24.0.0' } }, null, 2),
  'nx.json': JSON.stringify(
    {
      $schema: './node_modules/nx/schemas/nx-schema.json',
      namedInputs: { default: ['{projectRoot}/**/*'], production: ['default', '!{projectRoot}/**/*.spec.ts'] },
      targetDefaults: { build: { dependsOn: ['^build'], inputs: ['production', '^production'], outputs: ['{workspaceRoot}/dist/{projectRoot}'], cache: true } },
    },
    null,
    2,
  ),
  'libs/util/project.json': JSON.stringify(
    {
      name: 'util',
      root: 'libs/util',
      targets: { build: { executor: 'nx:run-commands', options: { command: 'mkdir -p dist/libs/util && cp libs/util/src/greeting.txt dist/libs/util/' } } },
    },
    null,
    2,
  ),
  'libs/util/src/greeting.txt': 'hello from util\n',
  '.gitignore': 'node_modules\n.nx\n',
};

/**
 * What the generated 10_busybox layer gets: the blank disk's first layer
 * leaves an empty ext4 file system, and build-layers need a shell in it.
 * A static busybox (the host's), also as /bin/bash, which the generated
 * build-layer scripts name in their first line.
 */
const BUSYBOX_BODY = `
device=$3
read -r start sectors < <(sfdisk --dump "$device" | sed -n 's/.*start= *\\([0-9]*\\), size= *\\([0-9]*\\).*/\\1 \\2/p')
partition=$(losetup --find --show --offset $((start * 512)) --sizelimit $((sectors * 512)) "$device")
root=$(mktemp -d)
trap 'umount "$root" 2>/dev/null || true; rmdir "$root"; losetup -d "$partition"' EXIT
mount "$partition" "$root"
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,root,mnt}
cp /bin/busybox "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list); do
  [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done
printf '#!/bin/sh\\nexec /bin/sh "$@"\\n' > "$root/bin/bash"
chmod 755 "$root/bin/bash"
`;

const HELLO_BODY = 'echo "hello from ${VMLB_LAYER} of ${VMLB_IMAGE}" > /etc/hello\n';

const LAYERS = ['tiny-00_disk:build', 'tiny-10_busybox:build', 'tiny-20_hello:build'];

// The packages as npm publishes them, installed by npm into a workspace that
// is not this repository: what a user gets from `npm i -D vmlb`.
describe('vmlb installed from its npm tarball into a workspace of its own', () => {
  let packDir: string;
  let packed: Record<string, PackedPackage>;
  let workspace: UserWorkspace;
  let added: UserWorkspace | undefined;
  let nxJsonBefore: Record<string, unknown>;
  let utilBefore: string;
  let libsBefore: string;

  beforeAll(async () => {
    packDir = mkdtempSync(path.join(tmpdir(), 'vmlb-packs-'));
    packed = await packRepositoryPackages(packDir, ['vmlb', 'vmlb-cache-server']);
    workspace = await UserWorkspace.create(USER_FILES);
  });
  afterAll(async () => {
    if (workspace) await tearDownHost(new NxWorkspace({ existingRoot: workspace.root }));
    workspace?.remove();
    added?.remove();
    rmSync(packDir, { recursive: true, force: true });
  });

  it('1. packs every file the installed plugin reads at run time, and no sources, specs or build state', () => {
    const files = packed['vmlb'].files;
    const plugin = (file: string) => JSON.parse(readFileSync(path.join(REPO_ROOT, 'packages/vmlb', file), 'utf8'));
    const executors = Object.values<{ implementation: string; schema: string }>(plugin('executors.json').executors);
    const generators = Object.values<{ factory: string; schema: string }>(plugin('generators.json').generators);
    const named = [...executors.flatMap((e) => [e.implementation, e.schema]), ...generators.flatMap((g) => [g.factory, g.schema])];
    for (const file of [
      'package.json',
      'README.md',
      'LICENSE',
      'executors.json',
      'generators.json',
      'dist/index.js',
      'src/schemas/image.schema.json',
      // Spawned by its path: the watcher that releases a killed build's disks.
      'dist/lib/build/leftover-reaper.js',
      ...named.map((file) => path.posix.normalize(file)),
      ...generatorTemplates(),
    ]) {
      expect(files).toContain(file);
    }
    expect(files.filter((file) => /\.spec\.|\.tsbuildinfo$|^test\/|^e2e\/|^src\/.*\.ts$/.test(file))).toEqual([]);

    expect(packed['vmlb-cache-server'].files).toEqual(expect.arrayContaining(['LICENSE', 'README.md', 'package.json', 'dist/main.js']));
    for (const name of ['vmlb', 'vmlb-cache-server']) {
      const manifest = JSON.parse(readFileSync(path.join(REPO_ROOT, name === 'vmlb' ? 'packages/vmlb' : 'tools/cache-server', 'package.json'), 'utf8'));
      expect(manifest.private).toBeUndefined();
      expect(manifest).toMatchObject({ license: 'MIT', repository: { url: 'git+https://github.com/vmlb/vmlb.git' }, bugs: expect.any(Object) });
    }
  });

  it('2. installs with npm beside Nx 24, needing nothing of this repository', async () => {
    await workspace.npmInstall();
    await workspace.npmInstall('-D', packed['vmlb'].tarball, packed['vmlb-cache-server'].tarball);
    // Exits non-zero on a missing or invalid dependency, peers included.
    await workspace.runOk('npm', ['ls', '--all']);
    // What only this repository's root installs: the plugin must run without it.
    const resolvable = await workspace.runOk('node', [
      '-p',
      "['typescript', 'ts-node', 'ts-jest', 'jest', 's3rver'].filter((name) => { try { return require.resolve(name); } catch { return false; } }).join(' ')",
    ]);
    expect(resolvable.trim()).toBe('');
    await workspace.commitAll('acme with vmlb installed');
    nxJsonBefore = workspace.readJson('nx.json');
    utilBefore = await workspace.nx(['show', 'project', 'util', '--json']);
    libsBefore = folderFingerprint(workspace.path('libs'));
  });

  it('3. nx g vmlb:init registers the plugin and shields its executors, changes nothing else, and changes nothing when run again', async () => {
    await workspace.nx(['g', 'vmlb:init']);
    expect(await workspace.changedFiles()).toEqual([' M .gitignore', ' M nx.json']);
    expect(workspace.readJson('nx.json')).toEqual({
      ...nxJsonBefore,
      plugins: [{ plugin: 'vmlb', options: {} }],
      targetDefaults: { ...(nxJsonBefore.targetDefaults as object), ...Object.fromEntries(SHIELDED_EXECUTORS.map((executor) => [executor, {}])) },
    });
    expect(workspace.read('.gitignore')).toBe('node_modules\n.nx\ndist\n');
    expect(await workspace.nx(['show', 'project', 'util', '--json'])).toBe(utilBefore);
    await workspace.commitAll('vmlb:init');

    await workspace.nx(['g', 'vmlb:init']);
    expect(await workspace.changedFiles()).toEqual([]);
  });

  it('4. nx g vmlb:image and vmlb:layer write a blank-disk image and its next layers', async () => {
    await workspace.nx(['g', 'vmlb:image', 'tiny', '--empty', '64M']);
    await workspace.nx(['g', 'vmlb:layer', 'busybox', '--image', 'tiny', '--kind', 'modify-disk']);
    await workspace.nx(['g', 'vmlb:layer', 'hello', '--image', 'tiny']);
    expect(await workspace.changedFiles()).toEqual([
      '?? images/tiny/00_disk/modify-disk',
      '?? images/tiny/10_busybox/modify-disk',
      '?? images/tiny/20_hello/build-layer',
      '?? images/tiny/image.json',
    ]);
    const imageJson = workspace.readJson<{ $schema: string }>('images/tiny/image.json');
    expect(imageJson).toEqual({ $schema: '../../node_modules/vmlb/src/schemas/image.schema.json', base: { empty: '64M' } });
    // The schema editors load is in the installed package.
    expect(existsSync(workspace.path('images/tiny', imageJson.$schema))).toBe(true);
    for (const script of ['00_disk/modify-disk', '10_busybox/modify-disk', '20_hello/build-layer']) {
      expect(statSync(workspace.path('images/tiny', script)).mode & 0o111).toBe(0o111);
      expect(workspace.read(`images/tiny/${script}`)).toMatch(/^#!\/bin\/bash\n/);
    }
    expect(workspace.read('images/tiny/00_disk/modify-disk')).toContain('mkfs.ext4');
    const projects = JSON.parse(await workspace.nx(['show', 'projects', '--json']));
    expect(projects.sort()).toEqual(['image-tiny', 'tiny-00_disk', 'tiny-10_busybox', 'tiny-20_hello', 'util']);

    workspace.write('images/tiny/10_busybox/modify-disk', workspace.read('images/tiny/10_busybox/modify-disk') + BUSYBOX_BODY);
    workspace.write('images/tiny/20_hello/build-layer', workspace.read('images/tiny/20_hello/build-layer') + HELLO_BODY);
  });

  it('5. nx build image-tiny builds the layer chain, and the image holds what the layers wrote', async () => {
    const output = await workspace.nx(['build', 'image-tiny']);
    expect(tasksRun(output)).toEqual(['image-tiny:base', 'image-tiny:build', ...LAYERS]);
    const dist = (file: string) => workspace.path('dist/images/tiny', file);
    expect(readlinkSync(dist('image.qcow2'))).toBe('20_hello.qcow2');
    for (const [layer, parent] of [
      ['00_disk', 'base'],
      ['10_busybox', '00_disk'],
      ['20_hello', '10_busybox'],
    ]) {
      const { stdout } = await execa('qemu-img', ['info', '-U', '--output=json', dist(`${layer}.qcow2`)]);
      expect(JSON.parse(stdout)['backing-filename']).toBe(`${parent}.qcow2`);
    }
    expect(await readFilesFromImage(dist('image.qcow2'), ['/etc/hello'])).toEqual({ '/etc/hello': 'hello from 20_hello of tiny' });
    expect(await waitForCleanHost(workspace.root, {}, 20_000)).toBe('');
  });

  it("6. builds the workspace's other projects beside the image, takes every layer from the cache, and left them as they were", async () => {
    const output = await workspace.nx(['run-many', '-t', 'build']);
    expect(cacheHits(output)).toEqual(['image-tiny:base', ...LAYERS]);
    expect(tasksRun(output)).toEqual(['image-tiny:build', 'util:build']);
    expect(workspace.read('dist/libs/util/greeting.txt')).toBe('hello from util\n');
    expect(await workspace.nx(['show', 'project', 'util', '--json'])).toBe(utilBefore);
    expect(folderFingerprint(workspace.path('libs'))).toBe(libsBefore);
  });

  it('7. runs vmlb-cache-server from its installed tarball', async () => {
    const help = await workspace.runOk('npx', ['vmlb-cache-server', '--help']);
    expect(help).toContain('Usage: vmlb-cache-server --dir <path> [options]');
  });

  it('8. nx add installs vmlb and runs its init generator', async () => {
    added = await UserWorkspace.create({ 'package.json': USER_FILES['package.json'], 'nx.json': USER_FILES['nx.json'] });
    await added.npmInstall();
    await added.nx(['add', `vmlb@file:${packed['vmlb'].tarball}`]);
    // npm records the tarball relative to the workspace.
    const specifier = added.readJson<{ devDependencies: Record<string, string> }>('package.json').devDependencies.vmlb;
    expect(path.resolve(added.root, specifier.replace(/^file:/, ''))).toBe(packed['vmlb'].tarball);
    expect(added.readJson('nx.json')).toMatchObject({ plugins: [{ plugin: 'vmlb', options: {} }], targetDefaults: { 'vmlb:layer': {} } });
    expect(existsSync(added.path('node_modules/vmlb/dist/index.js'))).toBe(true);
  });
});

/** The generators' template files (read from disk when a generator runs), package-relative, as the repository has them. */
function generatorTemplates(): string[] {
  const packageRoot = path.join(REPO_ROOT, 'packages/vmlb');
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((entry) => (entry.isDirectory() ? walk(path.join(dir, entry.name)) : [path.join(dir, entry.name)]));
  return walk(path.join(packageRoot, 'src/generators'))
    .map((file) => path.relative(packageRoot, file))
    .filter((file) => file.split(path.sep).includes('files'));
}
