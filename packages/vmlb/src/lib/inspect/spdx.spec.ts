import { purl, spdxDocument } from './spdx';

describe('spdxDocument', () => {
  const document = spdxDocument({
    image: 'worker',
    digest: 'd'.repeat(64),
    layers: [
      { image: 'prod', layer: 'base', digest: 'a'.repeat(64) },
      { image: 'prod', layer: '20_packages', digest: 'b'.repeat(64) },
      { image: 'worker', layer: '10_worker', digest: 'd'.repeat(64) },
    ],
    packages: [
      { name: 'libstdc++6', version: '12.2.0-14', architecture: 'amd64', image: 'prod', layer: '20_packages', how: 'installed' },
      { name: 'libstdc++6', version: '12.2.0-14', architecture: 'i386', image: 'prod', layer: '20_packages', how: 'installed' },
      { name: 'tzdata', version: '1:2024a-0', architecture: 'all', image: 'prod', layer: 'base', how: 'present' },
    ],
    limits: [],
    created: '2026-12-01T10:00:00Z',
    tool: 'vmlb-0.1.0',
    distro: 'debian',
  }) as { packages: Array<Record<string, unknown>>; relationships: Array<Record<string, string>>; documentNamespace: string; comment?: string };

  it('gives every element a distinct SPDX id of the allowed characters', () => {
    const ids = document.packages.map((pkg) => pkg.SPDXID as string);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(/^SPDXRef-[A-Za-z0-9.-]+$/);
    expect(ids).toContain('SPDXRef-Package-deb-libstdc-6-amd64');
  });

  it('puts each package under the layer that brought it, and the layers under the image the document describes', () => {
    const name = (id: string) => document.packages.find((pkg) => pkg.SPDXID === id)!.name;
    const edges = document.relationships.map(
      (edge) =>
        `${edge.spdxElementId === 'SPDXRef-DOCUMENT' ? 'DOCUMENT' : name(edge.spdxElementId)} ${edge.relationshipType} ${name(edge.relatedSpdxElement)}`,
    );
    expect(edges).toEqual([
      'DOCUMENT DESCRIBES worker',
      'worker CONTAINS prod/base',
      'worker CONTAINS prod/20_packages',
      'worker CONTAINS worker/10_worker',
      'prod/20_packages CONTAINS libstdc++6',
      'prod/20_packages CONTAINS libstdc++6',
      'prod/base CONTAINS tzdata',
    ]);
    expect(document.packages.find((pkg) => pkg.name === 'tzdata')!.sourceInfo).toBe('present after the base disk of image prod');
    expect(document.documentNamespace).toBe(`https://vmlb.dev/spdx/worker-${'d'.repeat(64)}`);
    expect(document.comment).toBeUndefined();
  });

  it('writes package URLs with the version and name encoded and the architecture as a qualifier', () => {
    expect(purl({ name: 'libstdc++6', version: '1:2.0~rc1', architecture: 'amd64' }, 'ubuntu')).toBe('pkg:deb/ubuntu/libstdc%2B%2B6@1%3A2.0~rc1?arch=amd64');
    expect(purl({ name: 'curl', version: '7.88.1-10', architecture: '' }, 'debian')).toBe('pkg:deb/debian/curl@7.88.1-10');
  });
});
