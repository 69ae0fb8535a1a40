import { appendFileSync, cpSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { readFilesFromImage } from '../test/support/disk-read';
import { NxWorkspace, REPO_ROOT, cacheHits, tasksRun } from '../test/support/nx-workspace';

/** Installed packages (name:arch -> version) from a dpkg status file, read independently of vmlb's parser. */
function installedPackages(status: string): Map<string, string> {
  const installed = new Map<string, string>();
  for (const stanza of status.split(/\n\n+/)) {
    const field = (name: string) => stanza.match(new RegExp(`^${name}: (.*)$`, 'm'))?.[1];
    if (field('Status') === 'install ok installed') installed.set(`${field('Package')}:${field('Architecture')}`, field('Version')!);
  }
  return installed;
}

/**
 * The flagship image end to end: images/prod built from an empty disk,
 * booted under qemu with cloud-init and checked over ssh; then the
 * everyday change (one line of the welcome app's source) through
 * `nx affected -t build` and a checked boot; then images/worker, built on
 * prod's 20_packages layer, flattened and boot-checked. Timings are printed
 * for docs/benchmarks.md.
 */
describe('images/prod', () => {
  const workspace = new NxWorkspace({ images: ['prod', 'worker'] });
  cpSync(path.join(REPO_ROOT, 'apps/welcome'), workspace.path('apps/welcome'), { recursive: true });
  beforeAll(() => workspace.commitAll());
  afterAll(() => workspace.remove());
  const timed = async <T>(label: string, work: () => Promise<T>): Promise<T> => {
    const started = Date.now();
    const result = await work();
    const line = `${label}: ${((Date.now() - started) / 1000).toFixed(1)} s`;
    console.log(line);
    appendFileSync(workspace.path('timings.txt'), `${line}\n`);
    return result;
  };
  const check = ['run', 'image-prod:test-boot', '--check', '--ssh=systemctl is-system-running --wait; curl -fsS localhost'];

  it('builds from scratch, boots, and serves the page over ssh', async () => {
    const build = await timed('full build', () => workspace.nxOk(['build', 'image-prod'], { timeoutMs: 3_000_000 }));
    expect(tasksRun(build)).toEqual(
      [
        'image-prod:base',
        'welcome:build',
        'image-prod:build',
        ...['00_base', '05_resize', '10_update', '20_packages', '30_app', '50_cleanup'].map((layer) => `prod-${layer}:build`),
      ].sort(),
    );
    const boot = await timed('boot check with ssh', () => workspace.nxOk(check, { timeoutMs: 1_200_000 }));
    expect(boot).toContain('Hello from prod, built by vmlb');
    expect(boot).toMatch(/image prod booted: \/login:\/ appeared after .* and the ssh command passed/);
  });

  it("lists in 20_packages' manifest exactly the packages apt-get installed, with their versions", async () => {
    const dist = (name: string) => workspace.path('dist/images/prod', name);
    // The oracle: dpkg's own status file before and after the layer, read from the disks with debugfs.
    const status = async (layer: string) =>
      installedPackages((await readFilesFromImage(dist(`${layer}.qcow2`), ['/var/lib/dpkg/status']))['/var/lib/dpkg/status']);
    const [before, after] = [await status('10_update'), await status('20_packages')];
    const expected = [...after].filter(([key]) => !before.has(key)).map(([key, version]) => ({ name: key.split(':')[0], version }));
    const manifest = JSON.parse(readFileSync(dist('20_packages.manifest.json'), 'utf8'));
    expect(manifest.packages.installed).toEqual(expected.sort((a, b) => (a.name < b.name ? -1 : 1)));
    expect(manifest.packages.installed.map((pkg: { name: string }) => pkg.name)).toEqual(expect.arrayContaining(['cloud-init', 'curl', 'nginx']));
    expect(manifest.packages.removed).toEqual([]);
    const timing = `manifest of 20_packages: ${manifest.files.counts.added} files added, ${manifest.packages.installed.length} packages, snapshots ${manifest.snapshotMs} ms of a ${manifest.build.seconds} s build`;
    console.log(timing);
    appendFileSync(workspace.path('timings.txt'), `${timing}\n`);

    const diff = await workspace.nxOk(['run', 'image-prod:diff', '--from=10_update', '--to=20_packages']);
    expect(diff).toContain(`+ nginx ${after.get('nginx:amd64')}`);
    const table = await workspace.nxOk(['run', 'image-prod:layers']);
    expect(table).toMatch(new RegExp(`20_packages\\s+build-layer\\s+cache-mount /var/cache/apt/archives\\s+built here.*\\+${expected.length} packages`));
  });

  it('lists in the SBOM exactly the packages dpkg lists in the built image, each with the layer that installed it', async () => {
    const dist = (name: string) => workspace.path('dist/images/prod', name);
    // The oracle: dpkg's status file in the finished image, read from the disk with debugfs.
    const status = (await readFilesFromImage(dist('image.qcow2'), ['/var/lib/dpkg/status']))['/var/lib/dpkg/status'];
    const installed = installedPackages(status);
    await timed('sbom', () => workspace.nxOk(['run', 'image-prod:sbom']));
    const sbom = JSON.parse(readFileSync(dist('prod.spdx.json'), 'utf8')) as {
      spdxVersion: string;
      packages: Array<{ SPDXID: string; name: string; versionInfo: string; externalRefs?: Array<{ referenceLocator: string }> }>;
      relationships: Array<{ spdxElementId: string; relationshipType: string; relatedSpdxElement: string }>;
    };
    expect(sbom.spdxVersion).toBe('SPDX-2.3');
    const listed = new Map(
      sbom.packages
        .filter((pkg) => pkg.externalRefs?.length)
        .map((pkg) => [`${pkg.name}:${/[?&]arch=([^&]+)/.exec(pkg.externalRefs![0].referenceLocator)?.[1]}`, pkg.versionInfo]),
    );
    expect([...listed].sort()).toEqual([...installed].sort());
    // debootstrap's packages belong to the modify-disk layer that ran it, apt's to the layer that ran apt.
    const names = new Map(sbom.packages.map((pkg) => [pkg.SPDXID, pkg.name]));
    const layerOf = (name: string) =>
      names.get(sbom.relationships.find((edge) => edge.relationshipType === 'CONTAINS' && names.get(edge.relatedSpdxElement) === name)!.spdxElementId);
    expect(layerOf('nginx')).toBe('prod/20_packages');
    expect(layerOf('openssh-server')).toMatch(/^prod\/(00_base|10_update)$/);
    console.log(`sbom of prod: ${listed.size} packages`);
  });

  it('takes an edit of the app through nx affected to a checked boot that serves it', async () => {
    const edited = Date.now();
    writeFileSync(workspace.path('apps/welcome/src/index.html'), '<!doctype html><title>prod</title><h1>Edited page, rebuilt by vmlb</h1>\n');
    const affected = await timed('nx affected -t build (welcome edited)', () =>
      workspace.nxOk(['affected', '-t', 'build', '--base=HEAD'], { timeoutMs: 1_200_000 }),
    );
    expect(tasksRun(affected)).toEqual(['image-prod:build', 'prod-30_app:build', 'prod-50_cleanup:build', 'welcome:build']);
    expect(cacheHits(affected)).toEqual(['image-prod:base', 'prod-00_base:build', 'prod-05_resize:build', 'prod-10_update:build', 'prod-20_packages:build']);
    const boot = await timed('boot check with ssh after the edit', () => workspace.nxOk(check, { timeoutMs: 1_200_000 }));
    expect(boot).toContain('Edited page, rebuilt by vmlb');
    const line = `edit to checked boot: ${((Date.now() - edited) / 1000).toFixed(1)} s`;
    console.log(line);
    appendFileSync(workspace.path('timings.txt'), line + '\n');
  });

  it('builds nothing when nothing changed: every layer a cache hit, image.qcow2 left as it is', async () => {
    const image = workspace.path('dist/images/prod/image.qcow2');
    const before = { link: readlinkSync(image), modified: statSync(image).mtimeMs };
    const noop = await timed('no-op build', () => workspace.nxOk(['build', 'image-prod']));
    expect(tasksRun(noop)).toEqual(['image-prod:build']);
    expect({ link: readlinkSync(image), modified: statSync(image).mtimeMs }).toEqual(before);
  });

  it('builds images/worker on prod’s 20_packages layer, flattens it, and boots the export with its worker running', async () => {
    const build = await timed('build of image-worker on prod', () => workspace.nxOk(['build', 'image-worker'], { timeoutMs: 1_200_000 }));
    expect(tasksRun(build)).toEqual(['image-worker:build', 'worker-10_worker:build', 'worker-90_cleanup:build']);
    expect(cacheHits(build)).toEqual(['image-prod:base', 'prod-00_base:build', 'prod-10_update:build', 'prod-20_packages:build']);
    await timed('flatten of image-worker', () => workspace.nxOk(['run', 'image-worker:flatten', '--sbom'], { timeoutMs: 1_200_000 }));
    const exported = workspace.path('dist/images/worker/export/qcow2/worker.qcow2');
    const boot = await timed('boot check of the worker export', () =>
      workspace.nxOk(
        [
          'run',
          'image-worker:test-boot',
          '--check',
          `--image=${exported}`,
          // The worker turns a job into its keys: a JSON object in, ["job"] out (base64, so no quotes cross the command line).
          '--ssh=systemctl is-system-running --wait; systemctl is-active vmlb-worker && echo eyJqb2IiOjF9 | base64 -d | sudo tee /var/spool/vmlb-worker/incoming/a.json >/dev/null && for i in $(seq 60); do [ -e /var/spool/vmlb-worker/done/a.keys ] && break; sleep 1; done; cat /var/spool/vmlb-worker/done/a.keys',
        ],
        { timeoutMs: 1_200_000 },
      ),
    );
    expect(boot).toContain('["job"]');
    const sbom = JSON.parse(readFileSync(workspace.path('dist/images/worker/export/qcow2/worker.spdx.json'), 'utf8')) as {
      packages: Array<{ name: string; sourceInfo?: string }>;
    };
    expect(sbom.packages.find((pkg) => pkg.name === 'jq')?.sourceInfo).toBe('installed by layer 10_worker of image worker');
    expect(sbom.packages.find((pkg) => pkg.name === 'nginx')?.sourceInfo).toBe('installed by layer 20_packages of image prod');
  });
});
