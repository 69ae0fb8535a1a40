import * as path from 'node:path';
import { readDigest } from '../cache-identity/digest';
import { digestPathFor, manifestPathFor, snapshotPathFor } from '../image/dist-layout';
import { type ChainFile, imageChainFiles, imageRootFinder } from '../image/image-chain';
import type { Log } from '../util/log';
import { writeFileAtomic } from '../util/atomic-file';
import { VMLB_VERSION } from '../util/version';
import { readManifest } from './layer-manifest';
import { type ImagePackages, type LayerPackageRecord, imagePackages } from './sbom-packages';
import { readSnapshotFile } from './snapshot-file';
import { spdxDocument } from './spdx';

export interface ImageSbomOptions {
  workspaceRoot: string;
  /** The image the document is of (the last file's image). */
  image: string;
  /** purl namespace of the image's distribution. */
  distro: string;
  /** The document's creation time. */
  now: Date;
}

/**
 * An image's SPDX document from what its chain's builds wrote beside each
 * layer (digest, manifest, package list): no layer file is read, so it
 * works on a chain of cache hits and in blob mode before a pull. The
 * image must be built (or restored) here; a missing record names the
 * layer and the command that puts it in place.
 */
export async function imageSbom(
  chain: readonly ChainFile[],
  options: ImageSbomOptions,
): Promise<{ document: Record<string, unknown>; packages: ImagePackages }> {
  const records: LayerPackageRecord[] = [];
  const layers: Array<{ image: string; layer: string; digest: string }> = [];
  for (const file of chain) {
    const qcow2 = path.resolve(options.workspaceRoot, file.qcow2);
    const shown = (of: string) => path.relative(options.workspaceRoot, of);
    let digest: string;
    try {
      digest = await readDigest(digestPathFor(qcow2));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      throw new Error(`Image ${options.image} is not built here: ${shown(digestPathFor(qcow2))} is missing. Build it first: nx build image-${options.image}`);
    }
    const manifest = readManifest(manifestPathFor(qcow2));
    if (!manifest) {
      throw new Error(
        `${shown(manifestPathFor(qcow2))} is missing or unreadable, so the packages of ${file.layer} of image ${file.image} are not known. ` +
          `Build the image again (nx build image-${options.image}); if it stays missing, rebuild that layer with --skip-nx-cache.`,
      );
    }
    const ranInRoot = file.kind === 'build-layer' && Array.isArray(manifest.files?.added);
    const snapshot = ranInRoot ? await readSnapshotFile(snapshotPathFor(qcow2), digest) : undefined;
    const after =
      snapshot?.packageManager === 'dpkg' && snapshot.packages
        ? [...snapshot.packages].map(([key, version]) => ({ key, version, architecture: snapshot.packageArchitectures?.get(key) ?? '' }))
        : undefined;
    records.push({ image: file.image, layer: file.layer, kind: file.kind, ranInRoot, changes: manifest.packages, after });
    layers.push({ image: file.image, layer: file.layer, digest });
  }
  const packages = imagePackages(records);
  const document = spdxDocument({
    image: options.image,
    digest: layers[layers.length - 1].digest,
    layers,
    packages: packages.packages,
    limits: packages.limits,
    created: options.now.toISOString().replace(/\.\d{3}Z$/, 'Z'),
    tool: `vmlb-${VMLB_VERSION}`,
    distro: options.distro,
  });
  return { document, packages };
}

/** Writes the document as indented JSON, atomically. */
export async function writeSbom(file: string, document: Record<string, unknown>): Promise<void> {
  await writeFileAtomic(file, `${JSON.stringify(document, null, 2)}\n`);
}

/** The document's time: SOURCE_DATE_EPOCH (seconds) when set, for reproducible documents; else now. */
export function sbomTime(env: NodeJS.ProcessEnv): Date {
  const epoch = env.SOURCE_DATE_EPOCH;
  if (epoch === undefined || epoch === '') return new Date();
  if (!/^[0-9]+$/.test(epoch)) throw new Error(`SOURCE_DATE_EPOCH '${epoch}' is not a number of seconds since 1970.`);
  return new Date(Number(epoch) * 1000);
}

/** Where and how an image's SBOM is written, resolved once. */
export interface SbomPlan {
  imageName: string;
  imageRoot: string;
  distDir: string;
  /** Absolute path of the document. */
  output: string;
  distro: string;
  now: Date;
}

/** The plan from an executor's options: `output` workspace-relative (default `<distDir>/<image>/<image>.spdx.json`), the distribution checked, the time from `env`. */
export function sbomPlan(
  options: { imageName: string; imageRoot: string; distDir: string; output?: string; distro?: string },
  workspaceRoot: string,
  env: NodeJS.ProcessEnv,
): SbomPlan {
  const distro = options.distro ?? 'debian';
  if (!/^[a-z0-9][a-z0-9.+-]*$/.test(distro))
    throw new Error(`--distro '${distro}' cannot be a package URL namespace; use a distribution's name such as debian or ubuntu.`);
  const output = options.output ?? path.posix.join(options.distDir, options.imageName, `${options.imageName}.spdx.json`);
  return {
    imageName: options.imageName,
    imageRoot: options.imageRoot,
    distDir: options.distDir,
    output: path.resolve(workspaceRoot, output),
    distro,
    now: sbomTime(env),
  };
}

/** Reads the chain's records and writes the document (the sbom target, and flatten --sbom); `projects` finds the images a derived one is built on. */
export async function writeImageSbom(plan: SbomPlan, workspaceRoot: string, projects: Record<string, { root: string }> | undefined, log: Log): Promise<void> {
  const chain = imageChainFiles(workspaceRoot, plan.imageRoot, plan.distDir, imageRootFinder(projects));
  const { document, packages } = await imageSbom(chain, { workspaceRoot, image: plan.imageName, distro: plan.distro, now: plan.now });
  await writeSbom(plan.output, document);
  log(
    `vmlb: SBOM of image ${plan.imageName} (SPDX 2.3): ${packages.packages.length} packages from ${chain.length} files of its chain in ${path.relative(workspaceRoot, plan.output)}`,
  );
  packages.limits.forEach((limit) => log(`vmlb: warning: ${limit}`));
}
