import { type LayerPackageRecord, imagePackages } from './sbom-packages';

const changes = (installed: Array<[string, string]>, upgraded: Array<[string, string, string]> = [], removed: Array<[string, string]> = []) => ({
  manager: 'dpkg' as const,
  installed: installed.map(([name, version]) => ({ name, version })),
  removed: removed.map(([name, version]) => ({ name, version })),
  upgraded: upgraded.map(([name, from, to]) => ({ name, from, to })),
});
const list = (...packages: Array<[string, string, string]>) => packages.map(([key, version, architecture]) => ({ key, version, architecture }));
const opaque = (image: string, layer: string, kind: 'base' | 'modify-disk'): LayerPackageRecord => ({ image, layer, kind, ranInRoot: false });
const rows = (records: LayerPackageRecord[]) =>
  imagePackages(records).packages.map((pkg) => `${pkg.name} ${pkg.version} ${pkg.architecture} ${pkg.how} ${pkg.image}/${pkg.layer}`);

describe('imagePackages: the final packages and the layer that last installed or upgraded each', () => {
  // prod's shape: a blank base, debootstrap in a modify-disk layer, then build-layers with apt.
  const bootstrap = [opaque('prod', 'base', 'base'), opaque('prod', '00_base', 'modify-disk')];
  const update: LayerPackageRecord = {
    image: 'prod',
    layer: '10_update',
    kind: 'build-layer',
    ranInRoot: true,
    changes: changes([], [['libc6', '2.36-9', '2.36-9+deb12u4']]),
    after: list(['base-files', '12.4', 'amd64'], ['libc6', '2.36-9+deb12u4', 'amd64'], ['tzdata', '2024a', 'all']),
  };
  const packages: LayerPackageRecord = {
    image: 'prod',
    layer: '20_packages',
    kind: 'build-layer',
    ranInRoot: true,
    changes: changes([['nginx', '1.22.1']], [], [['tzdata', '2024a']]),
    after: list(['base-files', '12.4', 'amd64'], ['libc6', '2.36-9+deb12u4', 'amd64'], ['nginx', '1.22.1', 'amd64']),
  };

  it('attributes what a modify-disk layer brought to it, found in the next build-layer’s list; later changes to their layers', () => {
    expect(rows([...bootstrap, update, packages])).toEqual([
      'base-files 12.4 amd64 present prod/00_base',
      'libc6 2.36-9+deb12u4 amd64 upgraded prod/10_update',
      'nginx 1.22.1 amd64 installed prod/20_packages',
    ]);
  });

  it('follows a derived image into its own layers: an upgrade moves the package to the upgrading layer, a removal drops it', () => {
    const worker: LayerPackageRecord = {
      image: 'worker',
      layer: '10_worker',
      kind: 'build-layer',
      ranInRoot: true,
      changes: changes([['worker-svc', '1.0']], [['nginx', '1.22.1', '1.22.2']], [['base-files', '12.4']]),
      after: list(['libc6', '2.36-9+deb12u4', 'amd64'], ['nginx', '1.22.2', 'amd64'], ['worker-svc', '1.0', 'all']),
    };
    expect(rows([...bootstrap, update, packages, worker])).toEqual([
      'libc6 2.36-9+deb12u4 amd64 upgraded prod/10_update',
      'nginx 1.22.2 amd64 upgraded worker/10_worker',
      'worker-svc 1.0 all installed worker/10_worker',
    ]);
  });

  it('keeps both architectures of a multi-arch package apart', () => {
    const multiarch: LayerPackageRecord = {
      image: 'x',
      layer: '10_i386',
      kind: 'build-layer',
      ranInRoot: true,
      changes: changes([['libc6:i386', '2.36-9']]),
      after: list(['libc6:amd64', '2.36-9', 'amd64'], ['libc6:i386', '2.36-9', 'i386']),
    };
    expect(rows([opaque('x', 'base', 'base'), multiarch])).toEqual(['libc6 2.36-9 amd64 present x/base', 'libc6 2.36-9 i386 installed x/10_i386']);
  });

  it('applies the manifest’s changes to a layer without a stored list, and says what it cannot know', () => {
    const noList: LayerPackageRecord = { ...packages, after: undefined };
    const result = imagePackages([...bootstrap, update, noList]);
    expect(result.packages.map((pkg) => `${pkg.name} ${pkg.architecture} ${pkg.layer}`)).toEqual([
      'base-files amd64 00_base',
      'libc6 amd64 10_update',
      'nginx  20_packages',
    ]);
    expect(result.limits).toEqual(['some packages have no recorded architecture (their layer has no stored package list)']);
    expect(imagePackages([...bootstrap, noList]).limits[0]).toBe(
      "packages brought by layer 00_base of image prod and not changed by layer 20_packages of image prod are missing: layer 20_packages of image prod has no stored package list (a # noshare layer restored from this machine's store keeps none)",
    );
  });

  it('says when a layer without package records sits above the last one that has them', () => {
    expect(imagePackages([...bootstrap, update, opaque('prod', '05_resize', 'modify-disk')]).limits).toEqual([
      'packages changed by layer 05_resize of image prod (no package record: a base or modify-disk layer at the top of the chain) are not reflected',
    ]);
  });

  it('is empty for an image without a package database', () => {
    const busybox: LayerPackageRecord = { image: 'tiny', layer: '10_hello', kind: 'build-layer', ranInRoot: true };
    expect(imagePackages([opaque('tiny', 'base', 'base'), busybox])).toEqual({ packages: [], limits: [] });
  });
});
