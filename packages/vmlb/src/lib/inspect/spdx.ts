import type { ImagePackage } from './sbom-packages';

/**
 * An image's software bill of materials as an SPDX 2.3 JSON document:
 * the image, each layer of its chain, and each installed package. The
 * layer that last installed or upgraded a package CONTAINS it; the image
 * CONTAINS its layers; the document DESCRIBES the image.
 */

export interface SpdxInput {
  image: string;
  /** Chain digest of the image's top file: the image's identity, and the document's namespace. */
  digest: string;
  /** The chain's files, base first, with their chain digests. */
  layers: Array<{ image: string; layer: string; digest: string }>;
  packages: ImagePackage[];
  /** What the records could not tell; goes into the document's comment. */
  limits: string[];
  /** ISO 8601 time, to the second, in UTC. */
  created: string;
  /** The tool, e.g. `vmlb-0.1.0`. */
  tool: string;
  /** The package URL namespace of the image's distribution (`debian`, `ubuntu`). */
  distro: string;
}

/** The SPDX 2.3 document of an image, as a plain object for JSON.stringify. */
export function spdxDocument(input: SpdxInput): Record<string, unknown> {
  const ids = new SpdxIds();
  const imageId = ids.make('Image', input.image);
  const layerIds = new Map(input.layers.map((layer) => [`${layer.image}/${layer.layer}`, ids.make('Layer', `${layer.image}-${layer.layer}`)]));
  const unknown = { licenseConcluded: 'NOASSERTION', licenseDeclared: 'NOASSERTION', copyrightText: 'NOASSERTION' };
  const packages: Array<Record<string, unknown>> = [
    {
      SPDXID: imageId,
      name: input.image,
      versionInfo: input.digest,
      downloadLocation: 'NOASSERTION',
      filesAnalyzed: false,
      primaryPackagePurpose: 'OPERATING-SYSTEM',
      comment: `VM disk image built by vmlb; the version is the chain digest of its top layer.`,
      ...unknown,
    },
    ...input.layers.map((layer) => ({
      SPDXID: layerIds.get(`${layer.image}/${layer.layer}`),
      name: `${layer.image}/${layer.layer}`,
      versionInfo: layer.digest,
      downloadLocation: 'NOASSERTION',
      filesAnalyzed: false,
      primaryPackagePurpose: 'OTHER',
      comment:
        layer.layer === 'base' ? `The base disk of image ${layer.image}.` : `Layer ${layer.layer} of image ${layer.image}; the version is its chain digest.`,
      ...unknown,
    })),
  ];
  const relationships: Array<Record<string, string>> = [{ spdxElementId: 'SPDXRef-DOCUMENT', relationshipType: 'DESCRIBES', relatedSpdxElement: imageId }];
  for (const id of layerIds.values()) relationships.push({ spdxElementId: imageId, relationshipType: 'CONTAINS', relatedSpdxElement: id });
  for (const pkg of input.packages) {
    const id = ids.make('Package', `deb-${pkg.name}-${pkg.architecture || 'unknown'}`);
    packages.push({
      SPDXID: id,
      name: pkg.name,
      versionInfo: pkg.version,
      downloadLocation: 'NOASSERTION',
      filesAnalyzed: false,
      primaryPackagePurpose: 'INSTALL',
      sourceInfo: `${pkg.how === 'present' ? 'present after' : `${pkg.how} by`} ${pkg.layer === 'base' ? 'the base disk' : `layer ${pkg.layer}`} of image ${pkg.image}`,
      externalRefs: [{ referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: purl(pkg, input.distro) }],
      ...unknown,
    });
    const layerId = layerIds.get(`${pkg.image}/${pkg.layer}`);
    if (layerId) relationships.push({ spdxElementId: layerId, relationshipType: 'CONTAINS', relatedSpdxElement: id });
  }
  return {
    spdxVersion: 'SPDX-2.3',
    dataLicense: 'CC0-1.0',
    SPDXID: 'SPDXRef-DOCUMENT',
    name: `vmlb image ${input.image}`,
    documentNamespace: `https://vmlb.dev/spdx/${encodeURIComponent(input.image)}-${input.digest}`,
    creationInfo: {
      created: input.created,
      creators: [`Tool: ${input.tool}`],
      comment: `The dpkg packages of image ${input.image}, each under the layer that last installed or upgraded it, from the layer manifests and package lists vmlb wrote when it built them.`,
    },
    ...(input.limits.length ? { comment: `Limits: ${input.limits.join('; ')}.` } : {}),
    packages,
    relationships,
  };
}

/** The package URL of a dpkg package (`pkg:deb/debian/curl@7.88.1-10?arch=amd64`). */
export function purl(pkg: Pick<ImagePackage, 'name' | 'version' | 'architecture'>, distro: string): string {
  const arch = pkg.architecture ? `?arch=${encodeURIComponent(pkg.architecture)}` : '';
  return `pkg:deb/${encodeURIComponent(distro)}/${encodeURIComponent(pkg.name)}@${encodeURIComponent(pkg.version)}${arch}`;
}

/** SPDX ids: `SPDXRef-` then letters, digits, `.` and `-` only, unique in the document. */
class SpdxIds {
  private readonly used = new Set<string>();

  make(kind: string, name: string): string {
    const base = `SPDXRef-${kind}-${name.replace(/[^A-Za-z0-9.-]+/g, '-')}`;
    let id = base;
    for (let n = 2; this.used.has(id); n += 1) id = `${base}-${n}`;
    this.used.add(id);
    return id;
  }
}
