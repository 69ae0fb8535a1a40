import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { type ImageBase, normalizeBase } from '../image/generator';
import type { ImportReport } from './import-report';
import { type SeedBase, parseSeedBase } from './sconstruct';

export interface BaseOptions {
  baseUrl?: string;
  sha256?: string;
  basePath?: string;
}

/**
 * image.json's base. SConstruct names a download checked by the MD5 of the
 * decompressed file (or, in early versions, a disk put into the checkout by
 * hand), and vmlb checks a download by the SHA-256 of the file as
 * downloaded. The import never guesses that digest: without --sha256 (or a
 * base of its own) it refuses, printing the command that computes it.
 */
export function chooseBase(options: BaseOptions, sconstruct: string, checkoutRoot: string, report: ImportReport): ImageBase {
  const seed = parseSeedBase(sconstruct);
  if (options.baseUrl !== undefined || options.basePath !== undefined) {
    const base = normalizeBase(options);
    report.note('SConstruct', `the base is ${describe(base)}, as given${seed ? `, instead of SConstruct's ${seedName(seed)}` : ''}.`);
    return base;
  }
  if (options.sha256 !== undefined) {
    if (seed?.kind !== 'download') {
      throw new Error(
        `--sha256 checks the file SConstruct's download_base_image() downloads, and ${path.join(checkoutRoot, 'SConstruct')} ${
          seed ? `names a disk in the checkout (${seed.fileName}), not a download` : 'names no download'
        }. Give the download too (--base-url <url> --sha256 <hex>), or a disk: --base-path <file>.`,
      );
    }
    const base = normalizeBase({ baseUrl: seed.url, sha256: options.sha256 });
    report.changed(
      'SConstruct',
      seed.line,
      undefined,
      [`image.json: "base": ${JSON.stringify(base)}`],
      `SConstruct's download, checked by the --sha256 given${seed.md5 ? ` (SConstruct's MD5 ${seed.md5} is of the decompressed file; vmlb checks the download)` : ''}.`,
    );
    return base;
  }
  throw new Error(missingDigest(seed, checkoutRoot));
}

/** A base as the report names it. */
function describe(base: ImageBase): string {
  if ('url' in base) return `${base.url} (sha256 ${base.sha256})`;
  return 'path' in base ? `the disk ${base.path}` : `a blank ${base.empty} disk`;
}

/** SConstruct's base as the report names it. */
function seedName(seed: SeedBase): string {
  return seed.kind === 'download' ? `download ${seed.url}` : `disk ${seed.fileName}`;
}

/** The refusal: what SConstruct names, why it is not enough, and the commands that give what is. */
function missingDigest(seed: SeedBase | undefined, checkoutRoot: string): string {
  const sconstruct = path.join(checkoutRoot, 'SConstruct');
  if (!seed) {
    return (
      `${sconstruct} names no base disk the import can read (neither download_base_image()'s base_name and URL nor BASE_IMAGE). ` +
      `Give it: --base-url <url> --sha256 <64 hex digits> for a download, or --base-path <file> for a disk on this machine.`
    );
  }
  if (seed.kind === 'local') {
    const file = path.join(checkoutRoot, seed.fileName);
    return (
      `${sconstruct}:${seed.line} names the base disk ${seed.fileName}, a file put into the checkout by hand, with no URL or checksum. ` +
      `Use it where it is (vmlb reads it, never changes it): --base-path ${file}${existsSync(file) ? '' : ` (it is not there now)`}; ` +
      `or name its download: --base-url <url> --sha256 <64 hex digits>.`
    );
  }
  const download = `/tmp/${seed.fileName}${compression(seed.url).extension}`;
  const md5Check = seed.md5 ? ` && ${compression(seed.url).decompress(download)} | md5sum` : '';
  const downloaded = path.join(checkoutRoot, 'build', seed.fileName);
  return [
    `${sconstruct}:${seed.line} downloads the base ${seed.url}${seed.md5 ? ` and checks the MD5 of the decompressed file (${seed.md5})` : ' with no checksum'}; ` +
      `vmlb checks a download by the SHA-256 of the file as downloaded, which SConstruct does not name, and the import does not guess it. Compute it` +
      `${seed.md5 ? " (the last command prints the MD5 to compare with SConstruct's)" : ''}:`,
    `  curl -fsSL '${seed.url}' -o ${download} && sha256sum ${download}${md5Check}`,
    `then run the import again with --sha256 <the SHA-256 it printed>. Or use a disk you have: --base-path <file>` +
      (existsSync(downloaded) ? `, e.g. --base-path ${downloaded} (the original's download).` : '.'),
  ].join('\n');
}

/** How to decompress a download in the printed command, so that its MD5 can be compared with SConstruct's. */
function compression(url: string): { extension: string; decompress: (file: string) => string } {
  const extension = /\.(xz|gz|zst)$/.exec(url)?.[0] ?? '';
  const tool = { '.xz': 'xz', '.gz': 'gzip', '.zst': 'zstd' }[extension];
  return { extension, decompress: (file) => (tool ? `${tool} -dc ${file}` : `cat ${file}`) };
}
