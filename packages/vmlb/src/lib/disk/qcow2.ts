import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { run } from '../util/exec';
import { formatBytes } from '../util/units';
import { existingFile, imageInfo, standaloneSource } from './qcow2-info';
import type { DiskImageInfo, SourceFormat } from './qcow2-info';

/**
 * qemu-img wrappers for vmlb's overlay chains. Every file of an image's chain
 * sits in one folder and each overlay names its backing file by bare file
 * name (a derived image's first layer: `../<image>/<layer>.qcow2`), so the
 * folders can be copied, cached and restored anywhere and stay valid.
 *
 * Paths are handed to qemu-img absolute, so the file names it reports back
 * (`filename`, `full-backing-filename`) are absolute too, whatever our cwd.
 */

/**
 * qcow2 compatibility levels (image.json's `qcow2Compat`): `0.10` writes
 * qcow2 version 2, which old hypervisors read (no zstd compression, no zero
 * clusters); `1.1` writes version 3, qemu-img's default.
 */
export const QCOW2_COMPAT_LEVELS = ['0.10', '1.1'] as const;
export type Qcow2Compat = (typeof QCOW2_COMPAT_LEVELS)[number];

/** What is wrong with a compat level as given (the bad value and the fix), or undefined when it is one. */
export function qcow2CompatProblem(value: unknown): string | undefined {
  if (typeof value === 'string' && (QCOW2_COMPAT_LEVELS as readonly string[]).includes(value)) return undefined;
  return (
    `${JSON.stringify(value)} is not a qcow2 compat level: use "0.10" (qcow2 version 2, for old hypervisors) or "1.1" (version 3, qemu-img's default)` +
    (typeof value === 'number' ? ', in quotes' : '')
  );
}

/** An executor's compat option, checked where it is normalised; `setting` names it in the message. */
export function checkQcow2Compat(value: unknown, setting: string): Qcow2Compat | undefined {
  if (value === undefined) return undefined;
  const problem = qcow2CompatProblem(value);
  if (problem) throw new Error(`${setting} ${problem}.`);
  return value as Qcow2Compat;
}

/** `-o compat=...` for qemu-img create and convert, when a level is asked for. */
function compatArguments(compat: Qcow2Compat | undefined): string[] {
  return compat ? ['-o', `compat=${compat}`] : [];
}

export interface CreateOverlayOptions {
  /** Virtual size in bytes (`# disk-size`); at least the parent's. Default: the parent's size. */
  size?: number;
  /** What asked for the size, for messages (e.g. `layer 30_x (images/tiny/30_x/modify-disk)`). Default: the overlay's file name. */
  sizeFor?: string;
  /** qcow2 compatibility level of the new file. Default: qemu-img's. */
  compat?: Qcow2Compat;
  /** The parent's format and size, when the caller has just read them (a layer build checks the parent's chain first). */
  parentInfo?: Pick<DiskImageInfo, 'format' | 'virtualSize'>;
}

export interface ConvertOptions {
  /** Format of the source, given explicitly: probing a raw disk whose first bytes look like an image header is unsafe. */
  sourceFormat: SourceFormat;
  /** Show qemu-img's progress (`-p`) on our output while it runs. */
  progress?: boolean;
  /** qcow2 compatibility level of the result. Default: qemu-img's. */
  compat?: Qcow2Compat;
}

/**
 * The name an overlay in `outputFolder` records for its backing file
 * `parent`: the bare file name in the same folder, or `../<image>/<file>`
 * for a parent in a sibling folder (a derived image's first layer, on
 * another image's layer). Either stays valid wherever the folders that
 * hold the images are copied or restored together.
 */
export function backingNameFor(parent: string, outputFolder: string): string {
  const relative = path.relative(outputFolder, parent);
  const parts = relative.split(path.sep);
  const sibling = parts.length === 3 && parts[0] === '..' && parts[1] !== '..' && parts[1] !== '';
  if (parts.length !== 1 && !sibling) {
    throw new Error(
      `Overlay in ${outputFolder} cannot name its backing file ${parent}: overlays name their backing file by bare file name, ` +
        `or as ../<folder>/<file> for another image's layer, so that the chain resolves wherever dist/ is moved. Keep both in the same dist folder.`,
    );
  }
  return relative;
}

/**
 * Creates `outputPath` as a qcow2 overlay on `parentPath`, which sits in
 * the same folder or in a sibling folder (`backingNameFor`): the overlay
 * records the parent by that relative name, so the chain keeps working
 * wherever the folders are moved. Replaces `outputPath` if it exists. The
 * file's bytes depend only on the parent's name and size, so two runs
 * produce identical files.
 */
export async function createOverlay(parentPath: string, outputPath: string, options: CreateOverlayOptions = {}): Promise<void> {
  const parent = path.resolve(parentPath);
  const output = path.resolve(outputPath);
  const folder = path.dirname(output);
  const backingName = backingNameFor(parent, folder);
  if (output === parent) {
    throw new Error(`Overlay ${output} cannot be its own backing file (creating it would wipe the parent)`);
  }
  if (options.size !== undefined) assertDiskSize(options.size, `Overlay size for ${output}`);
  const parentInfo = options.parentInfo ?? (await imageInfo(parent));
  if (parentInfo.format !== 'qcow2') {
    throw new Error(`Backing file ${parent} is ${parentInfo.format}, not qcow2; vmlb chains hold qcow2 files only`);
  }
  if (options.size !== undefined && options.size < parentInfo.virtualSize) {
    const [wanted, minimum] = distinctSizes(options.size, parentInfo.virtualSize);
    throw new Error(
      `# disk-size ${wanted} for ${options.sizeFor ?? path.basename(output)} is smaller than its parent ${path.basename(parent)} (${minimum}); ` +
        `# disk-size must be at least the parent's size (${minimum}), since a disk cannot shrink under its partitions`,
    );
  }
  const args = ['create', '-q', '-f', 'qcow2', ...compatArguments(options.compat), '-F', 'qcow2', '-b', backingName, path.basename(output)];
  if (options.size !== undefined) args.push(String(options.size));
  // Run inside the overlay's folder so qemu-img finds the parent by the relative name it stores.
  await run('qemu-img', args, { cwd: folder });
}

/** Creates an empty qcow2 disk of `bytes` (no backing file). Replaces `outputPath` if it exists. */
export async function createBlank(outputPath: string, bytes: number, options: { compat?: Qcow2Compat } = {}): Promise<void> {
  const output = path.resolve(outputPath);
  assertDiskSize(bytes, `Disk size for ${output}`);
  await run('qemu-img', ['create', '-q', '-f', 'qcow2', ...compatArguments(options.compat), output, String(bytes)]);
}

/**
 * Converts a disk (raw, or another image format) into a standalone qcow2 at
 * `outputPath`, for importing base disks. Zero areas stay unallocated, so
 * the result is sparse. Written under a temporary name and renamed, so an
 * interrupted import never leaves a plausible-looking half file behind.
 */
export async function convertToQcow2(sourcePath: string, outputPath: string, options: ConvertOptions): Promise<void> {
  const source = await existingFile(sourcePath, 'Source disk');
  const output = path.resolve(outputPath);
  if (output === source) {
    throw new Error(`Cannot convert ${source} onto itself; choose another output path`);
  }
  const partial = path.join(path.dirname(output), `.${path.basename(output)}.${process.pid}.partial`);
  // Never probed and never through a backing file: a base must not pull other files of this host into it.
  const args = [
    'convert',
    ...(options.progress ? ['-p'] : []),
    '-f',
    options.sourceFormat,
    '-O',
    'qcow2',
    ...compatArguments(options.compat),
    standaloneSource(source),
    partial,
  ];
  try {
    await run('qemu-img', args, { stream: options.progress === true });
    await fs.rename(partial, output);
  } catch (error) {
    await fs.rm(partial, { force: true });
    throw error;
  }
}

function assertDiskSize(bytes: number, what: string): void {
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new Error(`${what} must be a positive whole number of bytes, got ${bytes}`);
  }
  // qemu-img rounds other sizes up silently; refuse them so the size we asked for is the size we get.
  if (bytes % 512 !== 0) {
    throw new Error(`${what} must be a multiple of 512 bytes, got ${bytes}`);
  }
}

/** Both sizes for people, with exact bytes when rounding would make them read alike. */
function distinctSizes(first: number, second: number): [string, string] {
  const [a, b] = [formatBytes(first), formatBytes(second)];
  return a === b ? [`${a} (${first} bytes)`, `${b} (${second} bytes)`] : [a, b];
}
