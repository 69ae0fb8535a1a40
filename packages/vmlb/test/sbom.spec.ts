import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { parseDpkgStatus } from '../src/lib/inspect/dpkg-status';
import { readFilesFromImage } from './support/disk-read';
import { NxWorkspace } from './support/nx-workspace';
import { spdxProblems } from './support/spdx-2.3-required';

/** A dpkg status stanza. */
const stanza = (name: string, version: string, architecture: string, status = 'install ok installed') =>
  `Package: ${name}\nStatus: ${status}\nPriority: optional\nArchitecture: ${architecture}\nVersion: ${version}\nDescription: ${name} for the test\n multi-line description\n`;
/** A script line that writes the whole dpkg status file, as dpkg leaves it. */
const writeStatus = (...stanzas: string[]) => `mkdir -p /var/lib/dpkg && printf '%s' '${stanzas.join('\n')}' > /var/lib/dpkg/status`;

interface SpdxDocument {
  creationInfo: { created: string };
  packages: Array<{ SPDXID: string; name: string; versionInfo: string; externalRefs?: Array<{ referenceLocator: string }>; sourceInfo?: string }>;
  relationships: Array<{ spdxElementId: string; relationshipType: string; relatedSpdxElement: string }>;
}

/** The document's dpkg packages as `name:arch version` lines, from their package URLs. */
function debPackages(document: SpdxDocument): string[] {
  return document.packages
    .filter((pkg) => pkg.externalRefs?.length)
    .map((pkg) => `${pkg.name}:${/[?&]arch=([^&]+)/.exec(pkg.externalRefs![0].referenceLocator)?.[1]} ${pkg.versionInfo}`)
    .sort();
}

/** Which layer CONTAINS each dpkg package: `name -> image/layer`. */
function layerOf(document: SpdxDocument): Record<string, string> {
  const byId = new Map(document.packages.map((pkg) => [pkg.SPDXID, pkg.name]));
  return Object.fromEntries(
    document.relationships
      .filter((edge) => edge.relationshipType === 'CONTAINS' && edge.relatedSpdxElement.startsWith('SPDXRef-Package-'))
      .map((edge) => [byId.get(edge.relatedSpdxElement), byId.get(edge.spdxElementId)]),
  );
}

/**
 * The SBOM of real builds: images/tiny with a dpkg database that a
 * modify-disk layer lays down (as debootstrap does in images/prod) and a
 * build-layer changes, and `worker`, built on tiny's layer, that upgrades,
 * removes and installs packages. The oracle is the dpkg status file read
 * back from the built image.
 */
describe('nx run image-<x>:sbom', () => {
  let workspace: NxWorkspace;
  const dist = (image: string, file: string) => workspace.path('dist/images', image, file);
  const sbom = (file = dist('worker', 'worker.spdx.json')) => JSON.parse(readFileSync(file, 'utf8')) as SpdxDocument;

  beforeAll(() => {
    workspace = new NxWorkspace({ images: ['tiny'] });
    // Like debootstrap: the packages arrive below any filesystem-level record, written on the host into the mounted root.
    workspace.script(
      'images/tiny/12_bootstrap/modify-disk',
      'read -r start sectors <<EOF',
      '$(sfdisk --dump "$3" | sed -n "s/.*start= *\\([0-9]*\\), size= *\\([0-9]*\\).*/\\1 \\2/p")',
      'EOF',
      'part=$(losetup --find --show --offset $((start * 512)) --sizelimit $((sectors * 512)) "$3")',
      'root=$(mktemp -d)',
      'mount "$part" "$root"',
      `mkdir -p "$root/var/lib/dpkg" && printf '%s' '${[stanza('base-files', '12.4', 'amd64'), stanza('libc6', '2.36-9', 'amd64'), stanza('tzdata', '2024a-0', 'all')].join('\n')}' > "$root/var/lib/dpkg/status"`,
      'umount "$root"; rmdir "$root"; losetup -d "$part"',
    );
    workspace.script(
      'images/tiny/15_apt/build-layer',
      writeStatus(
        stanza('base-files', '12.4', 'amd64'),
        stanza('curl', '7.88.1-10', 'amd64'),
        stanza('libc6', '2.36-9', 'amd64'),
        stanza('tzdata', '2024a-0', 'all'),
      ),
    );
    mkdirSync(workspace.path('images/worker'));
    writeFileSync(workspace.path('images/worker/image.json'), JSON.stringify({ base: { image: 'tiny', layer: '15_apt' } }));
    workspace.script(
      'images/worker/10_worker/build-layer',
      writeStatus(
        stanza('base-files', '12.4', 'amd64'),
        stanza('curl', '7.88.1-10', 'amd64'),
        stanza('libc6', '2.36-9+deb12u4', 'amd64'),
        stanza('tzdata', '2024a-0', 'all', 'deinstall ok config-files'),
        stanza('worker-svc', '1.0', 'all'),
      ),
    );
  });
  afterAll(() => workspace.remove());

  it('1. builds the image and lists exactly the packages dpkg lists in it, each under the layer that last installed or upgraded it', async () => {
    const output = await workspace.nxOk(['run', 'image-worker:sbom']);
    expect(output).toContain('vmlb: SBOM of image worker (SPDX 2.3): 4 packages from 6 files of its chain in dist/images/worker/worker.spdx.json');
    const status = (await readFilesFromImage(dist('worker', '10_worker.qcow2'), ['/var/lib/dpkg/status']))['/var/lib/dpkg/status'];
    const installed = parseDpkgStatus(status, 'status').map((pkg) => `${pkg.name}:${pkg.architecture} ${pkg.version}`);
    expect(installed).toHaveLength(4);
    const document = sbom();
    expect(debPackages(document)).toEqual(installed.sort());
    expect(layerOf(document)).toEqual({
      'base-files': 'tiny/12_bootstrap',
      curl: 'tiny/15_apt',
      libc6: 'worker/10_worker',
      'worker-svc': 'worker/10_worker',
    });
    expect(document.packages.find((pkg) => pkg.name === 'libc6')!.sourceInfo).toBe('upgraded by layer 10_worker of image worker');
  });

  it('2. is a valid SPDX 2.3 document', () => {
    expect(spdxProblems(sbom())).toEqual([]);
  });

  it('3. is reproducible with SOURCE_DATE_EPOCH, and comes from the records alone: after rm -rf dist and a build of cache hits', async () => {
    await workspace.nxOk(['run', 'image-worker:sbom'], { env: { SOURCE_DATE_EPOCH: '1764547200' } });
    const first = readFileSync(dist('worker', 'worker.spdx.json'), 'utf8');
    expect(JSON.parse(first).creationInfo.created).toBe('2025-12-01T00:00:00Z');
    rmSync(workspace.path('dist'), { recursive: true });
    await workspace.nxOk(['run', 'image-worker:sbom'], { env: { SOURCE_DATE_EPOCH: '1764547200' } });
    expect(readFileSync(dist('worker', 'worker.spdx.json'), 'utf8')).toBe(first);
  });

  it('4. the other image has its own: tzdata still installed there, from the modify-disk layer', async () => {
    await workspace.nxOk(['run', 'image-tiny:sbom']);
    const document = sbom(dist('tiny', 'tiny.spdx.json'));
    expect(debPackages(document)).toEqual(['base-files:amd64 12.4', 'curl:amd64 7.88.1-10', 'libc6:amd64 2.36-9', 'tzdata:all 2024a-0']);
    // 20_motd sits above 15_apt and has no dpkg change: nothing moves to it.
    expect(layerOf(document)).toEqual({ 'base-files': 'tiny/12_bootstrap', curl: 'tiny/15_apt', libc6: 'tiny/12_bootstrap', tzdata: 'tiny/12_bootstrap' });
    expect(spdxProblems(document)).toEqual([]);
  });

  it('5. flatten --sbom writes the document beside the exported file', async () => {
    await workspace.nxOk(['run', 'image-worker:flatten', '--sbom', '--distro=ubuntu']);
    const document = sbom(dist('worker', 'export/qcow2/worker.spdx.json'));
    expect(debPackages(document)).toEqual(debPackages(sbom()));
    expect(document.packages.find((pkg) => pkg.name === 'curl')!.externalRefs![0].referenceLocator).toBe('pkg:deb/ubuntu/curl@7.88.1-10?arch=amd64');
    expect(existsSync(dist('worker', 'export/qcow2/worker.qcow2'))).toBe(true);
  });

  it('6. names the missing record and the fix when a layer’s manifest or digest is gone', async () => {
    rmSync(dist('tiny', '15_apt.manifest.json'));
    const run = await workspace.nx(['run', 'image-worker:sbom', '--excludeTaskDependencies']);
    expect(run.exitCode).not.toBe(0);
    expect(run.output).toContain(
      'dist/images/tiny/15_apt.manifest.json is missing or unreadable, so the packages of 15_apt of image tiny are not known. Build the image again (nx build image-worker)',
    );
    rmSync(dist('tiny', '00_disk.digest'));
    const unbuilt = await workspace.nx(['run', 'image-worker:sbom', '--excludeTaskDependencies']);
    expect(unbuilt.exitCode).not.toBe(0);
    expect(unbuilt.output).toContain('Image worker is not built here: dist/images/tiny/00_disk.digest is missing. Build it first: nx build image-worker');
  });
});
