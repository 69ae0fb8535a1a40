import { cpSync, existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileContains } from './support/byte-search';
import { folderEntriesInImage, readFilesFromImage } from './support/disk-read';
import { describeLeftovers, findLeftovers } from './support/host-state';
import { layerRows } from './support/layer-rows';
import { killProcessGroups } from './support/host-teardown';
import { NxWorkspace, REPO_ROOT, type RunningNx, cacheHits, startNx, tasksRun } from './support/nx-workspace';

/**
 * `# cache-mount`: a folder of this machine, read-write at a path of the
 * image while a build-layer script runs, kept across layers, builds and
 * images, and never part of a layer's bytes, its manifest or its key. Real
 * builds of images/tiny (busybox) in a scratch workspace, read back with
 * debugfs.
 */
describe('cache mounts', () => {
  let workspace: NxWorkspace;
  let background: RunningNx | undefined;
  const dist = (image: string, file: string) => workspace.path('dist/images', image, file);
  const cacheFolder = (id: string, ...parts: string[]) => workspace.path('.nx/cache/vmlb-cache-mounts', id, ...parts);

  /** An image like images/tiny without its two small layers: the disk, then one layer that counts in a cache shared by both copies. */
  function counterImage(name: string): void {
    cpSync(path.join(REPO_ROOT, 'images/tiny'), workspace.path('images', name), { recursive: true });
    for (const layer of ['10_hello', '20_motd']) rmSync(workspace.path('images', name, layer), { recursive: true });
    workspace.script(
      `images/${name}/10_count/build-layer`,
      '# cache-mount /var/cache/count id=shared-counter',
      'cd /var/cache/count',
      // The first script to get the cache waits for the test's go-ahead (bounded), so the other build is
      // certain to want the cache meanwhile.
      'tries=0; while [ ! -e go ] && [ $tries -lt 3000 ]; do sleep 0.1; tries=$((tries + 1)); done',
      'i=0',
      'while [ $i -lt 20 ]; do',
      '  if [ -e busy ]; then echo "another script is using the cache at the same time" >&2; exit 1; fi',
      '  touch busy',
      '  n=$(cat counter 2>/dev/null || echo 0)',
      '  sleep 0.02',
      '  echo $((n + 1)) > counter',
      '  echo "$VMLB_IMAGE $i" >> log',
      '  rm busy',
      '  i=$((i + 1))',
      'done',
    );
  }

  beforeAll(() => {
    workspace = new NxWorkspace({ images: ['tiny'] });
    workspace.script(
      'images/tiny/15_fill/build-layer',
      '# cache-mount /var/cache/thing',
      // What the cache held when the script started, kept in the image (the first build: nothing).
      'ls /var/cache/thing > /etc/cache-seen-by-15',
      'echo "written by 15_fill" > /var/cache/thing/from-15',
      'head -c 1048576 /dev/zero > /var/cache/thing/megabyte',
    );
    workspace.script('images/tiny/16_read/build-layer', '# cache-mount /var/cache/thing', 'cat /var/cache/thing/from-15 > /etc/seen-by-16');
    counterImage('counta');
    counterImage('countb');
  });

  afterAll(async () => {
    await killProcessGroups([background?.pid]);
    workspace?.remove();
  });

  it('1. gives the script a host folder that the next layer sees, and that is in neither layer nor manifest', async () => {
    const output = await workspace.nxOk(['build', 'image-tiny', '--output-style=static']);
    expect(output).toContain(`vmlb: cache mount var-cache-thing (${cacheFolder('var-cache-thing')}) at /var/cache/thing`);
    expect(readFileSync(cacheFolder('var-cache-thing', 'from-15'), 'utf8')).toBe('written by 15_fill\n');

    expect(await readFilesFromImage(dist('tiny', 'image.qcow2'), ['/etc/cache-seen-by-15', '/etc/seen-by-16'])).toEqual({
      '/etc/cache-seen-by-15': '',
      '/etc/seen-by-16': 'written by 15_fill',
    });
    // images/tiny has no /var: the mount point was made for the script and taken away after it, with nothing in it.
    for (const layer of ['15_fill.qcow2', 'image.qcow2']) {
      expect(await folderEntriesInImage(dist('tiny', layer), '/')).toEqual(expect.arrayContaining(['bin', 'etc']));
      expect(await folderEntriesInImage(dist('tiny', layer), '/')).not.toContain('var');
      expect(await folderEntriesInImage(dist('tiny', layer), '/var')).toBeUndefined();
    }

    // Not a byte of what the script wrote into the cache is in its layer; the layer that copied it into the image holds it.
    expect(fileContains(dist('tiny', '15_fill.qcow2'), Buffer.from('written by 15_fill'))).toBe(false);
    expect(fileContains(dist('tiny', '16_read.qcow2'), Buffer.from('written by 15_fill'))).toBe(true);

    const manifest = JSON.parse(readFileSync(dist('tiny', '15_fill.manifest.json'), 'utf8'));
    expect(manifest.files.added.map((entry: { path: string }) => entry.path)).toEqual(['/etc/cache-seen-by-15']);
    expect(manifest.files.counts).toEqual({ added: 1, modified: 0, removed: 0 });
    expect(JSON.stringify(readFileSync(dist('tiny', '16_read.manifest.json'), 'utf8'))).not.toContain('/var');
    const rows = await layerRows(workspace, 'tiny');
    expect(rows.find((row) => row.name === '15_fill')?.hints).toEqual(['cache-mount /var/cache/thing']);
  }, 300_000);

  it('2. leaves the cache out of the key: the layers stay cache hits whatever the folder holds, and a rebuild reads what it holds now', async () => {
    writeFileSync(cacheFolder('var-cache-thing', 'from-15'), 'changed on the host\n');
    writeFileSync(cacheFolder('var-cache-thing', 'another'), 'more\n');
    const output = await workspace.nxOk(['build', 'image-tiny']);
    expect(cacheHits(output)).toEqual(expect.arrayContaining(['tiny-15_fill:build', 'tiny-16_read:build']));
    expect(tasksRun(output)).toEqual(['image-tiny:build']);

    await workspace.nxOk(['run', 'tiny-16_read:build', '--skip-nx-cache', '--excludeTaskDependencies']);
    expect(await readFilesFromImage(dist('tiny', '16_read.qcow2'), ['/etc/seen-by-16'])).toEqual({ '/etc/seen-by-16': 'changed on the host' });
  }, 300_000);

  it('3. lets one script at a time use a cache: two images built at once both count, without a lost update', async () => {
    background = startNx(workspace, ['run-many', '-t', 'build', '-p', 'image-counta', 'image-countb', '--parallel=2', '--output-style=stream']);
    await background.waitForOutput("vmlb: waiting for cache mount shared-counter, which another build's script is using", 280_000);
    writeFileSync(cacheFolder('shared-counter', 'go'), '');
    const done = await background.exited;
    expect(done.exitCode).toBe(0);
    expect(readFileSync(cacheFolder('shared-counter', 'counter'), 'utf8')).toBe('40\n');
    // Each script's 20 lines in one run: the other script never wrote in between.
    const lines = readFileSync(cacheFolder('shared-counter', 'log'), 'utf8').trim().split('\n');
    const first = lines[0].split(' ')[0];
    const second = first === 'counta' ? 'countb' : 'counta';
    expect(lines).toEqual([...Array.from({ length: 20 }, (_, i) => `${first} ${i}`), ...Array.from({ length: 20 }, (_, i) => `${second} ${i}`)]);
    expect(existsSync(cacheFolder('shared-counter', 'busy'))).toBe(false);
    expect(describeLeftovers(await findLeftovers(workspace.root))).toBe('');
  }, 300_000);

  it('4. gc trims the caches to the cap, least recently used first', async () => {
    const listed = () =>
      readdirSync(workspace.path('.nx/cache/vmlb-cache-mounts'))
        .filter((name) => !name.startsWith('.'))
        .sort();
    expect(listed()).toEqual(['shared-counter', 'var-cache-thing']);
    // var-cache-thing (1 MiB) was last used before shared-counter (a few KiB).
    const dryRun = await workspace.nxOk(['run', 'image-tiny:gc', '--cacheMountsMaxSize=512K', '--dryRun']);
    expect(dryRun).toMatch(/vmlb: cache mounts .*: 1\.\d+ MiB in 2 caches, cap 512 KiB; would remove var-cache-thing \(1\.\d+ MiB\); \d+ KiB left/);
    expect(listed()).toEqual(['shared-counter', 'var-cache-thing']);

    const output = await workspace.nxOk(['run', 'image-tiny:gc', '--cacheMountsMaxSize=512K']);
    expect(output).toMatch(/removed var-cache-thing/);
    expect(listed()).toEqual(['shared-counter']);
    expect(readFileSync(cacheFolder('shared-counter', 'counter'), 'utf8')).toBe('40\n');

    // Under the cap already: nothing goes.
    expect(await workspace.nxOk(['run', 'image-counta:gc'])).toMatch(/cap 10 GiB; nothing to remove/);
    expect(listed()).toEqual(['shared-counter']);
    // The next build that names a removed cache starts it again, empty.
    workspace.script('images/tiny/16_read/build-layer', '# cache-mount /var/cache/thing', 'ls -A /var/cache/thing > /etc/seen-after-gc');
    await workspace.nxOk(['build', 'image-tiny']);
    expect(await readFilesFromImage(dist('tiny', '16_read.qcow2'), ['/etc/seen-after-gc'])).toEqual({ '/etc/seen-after-gc': '' });
    expect(readdirSync(cacheFolder('var-cache-thing'))).toEqual([]);
  }, 300_000);
  it('5. refuses a cache mount at a file of the image, naming the layer and the fix, and leaves nothing behind', async () => {
    workspace.script('images/tiny/30_bad/build-layer', '# cache-mount /etc/hostname', 'true');
    try {
      const run = await workspace.nx(['build', 'image-tiny', '--output-style=static']);
      expect(run.exitCode).not.toBe(0);
      expect(run.output).toContain(
        'Layer 30_bad of image tiny: images/tiny/30_bad/build-layer: # cache-mount /etc/hostname: /etc/hostname is a file in the image, not a folder. ' +
          'Mount the cache at a folder (the one the tool writes its cache files into).',
      );
      expect(readdirSync(workspace.path('dist/images/tiny')).filter((file) => file.includes('30_bad'))).toEqual([]);
      expect(existsSync(cacheFolder('etc-hostname'))).toBe(false);
      expect(describeLeftovers(await findLeftovers(workspace.root))).toBe('');
    } finally {
      rmSync(workspace.path('images/tiny/30_bad'), { recursive: true, force: true });
    }
  }, 300_000);
});
