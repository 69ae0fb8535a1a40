import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { CommandError, run, tail } from '../util/exec';

/** Reading qcow2 chains: `qemu-img info` and `check` of a file or a whole chain, with errors that name the damaged or missing file. */

/** What `qemu-img info` says about one file. */
export interface DiskImageInfo {
  /** Absolute path of the file. */
  filename: string;
  /** 'qcow2', 'raw', ... as qemu-img detects (or was told) it. */
  format: string;
  /** Size of the disk the guest sees, in bytes. */
  virtualSize: number;
  /** Bytes the file occupies on the host (sparse files occupy less than their length). */
  actualSize: number;
  clusterSize?: number;
  /** The backing file name exactly as the header stores it (a bare name in vmlb's chains). */
  backingFile?: string;
  /** The backing file resolved against this file's folder (absolute). */
  fullBackingFile?: string;
  backingFormat?: string;
  /** qcow2 dirty flag: set while a writer with lazy refcounts has it open, or after it crashed. */
  dirty?: boolean;
  /** qcow2 corrupt flag: qemu found metadata damage while using the image and refuses writes. */
  corrupt?: boolean;
}

/** What `qemu-img check` found; returned only when the image has no corruption. */
export interface CheckResult {
  filename: string;
  format: string;
  /** Clusters allocated but unused: wasted space only, harmless. */
  leaks: number;
  corruptions: number;
  checkErrors: number;
  imageEndOffset?: number;
  totalClusters?: number;
  allocatedClusters?: number;
  fragmentedClusters?: number;
}

/** Formats vmlb imports base disks from. */
export type SourceFormat = 'raw' | 'qcow2' | 'vmdk' | 'vdi' | 'vhdx' | 'vpc';

/** Raw shape of one `qemu-img info --output=json` object (the fields we read). */
interface QemuImgInfoJson {
  filename: string;
  format: string;
  'virtual-size': number;
  'actual-size'?: number;
  'cluster-size'?: number;
  'backing-filename'?: string;
  'full-backing-filename'?: string;
  'backing-filename-format'?: string;
  'dirty-flag'?: boolean;
  'format-specific'?: { type?: string; data?: { corrupt?: boolean } };
}

interface QemuImgCheckJson {
  filename: string;
  format: string;
  'check-errors': number;
  corruptions?: number;
  leaks?: number;
  'image-end-offset'?: number;
  'total-clusters'?: number;
  'allocated-clusters'?: number;
  'fragmented-clusters'?: number;
}

/** qemu-img check exit statuses (see qemu-img(1)). */
const CHECK_EXIT = { clean: 0, checkFailed: 1, corrupt: 2, leaksOnly: 3, unsupported: 63 } as const;

/** The longest chain we follow when looking for a broken link; real chains have one file per layer. */
const MAX_CHAIN_LENGTH = 1000;

/**
 * `qemu-img info` of one file, without opening its backing file (so it
 * works on an overlay whose parent is missing). `-U` because vmlb reads
 * info while a build may hold the image open.
 */
export async function imageInfo(imagePath: string, options: { format?: SourceFormat } = {}): Promise<DiskImageInfo> {
  const file = await existingFile(imagePath, 'Disk image');
  // With a format: opened as that format, as a plain file and without any backing file (see standaloneSource).
  const source = options.format ? ['-f', options.format, standaloneSource(file)] : [file];
  const { stdout } = await run('qemu-img', ['info', '--output=json', '-U', ...source]);
  const info = toImageInfo(parseJson<QemuImgInfoJson>(stdout, `qemu-img info ${file}`));
  return options.format ? { ...info, filename: file } : info;
}

/**
 * A qemu source name for `file` that qemu opens exactly as a plain local
 * file, never as a pseudo-protocol (`json:`, `nbd:`...), and without its
 * backing file, whatever its header names: the format comes from `-f`.
 */
export function standaloneSource(file: string): string {
  return `json:${JSON.stringify({ backing: null, file: { driver: 'file', filename: file } })}`;
}

/**
 * The image and every backing file below it, top first, with absolute
 * file names. When a link is broken the error names the missing or damaged
 * file and the overlay that points at it.
 */
export async function backingChain(imagePath: string): Promise<DiskImageInfo[]> {
  const file = await existingFile(imagePath, 'Disk image');
  // -f qcow2: without it a top file whose header is destroyed is probed as
  // raw and "passes" as a one-file chain (the files below are opened with
  // the format their overlay names, so only the top needs this).
  const result = await run('qemu-img', ['info', '--backing-chain', '--output=json', '-U', '-f', 'qcow2', file], { reject: false });
  if (result.exitCode === 0) {
    return parseJson<QemuImgInfoJson[]>(result.stdout, `qemu-img info --backing-chain ${file}`).map(toImageInfo);
  }
  throw await chainError(file, qemuReason(result.stderr || result.stdout));
}

/**
 * `qemu-img check` of a qcow2 file (its backing files must be present).
 * Returns the result when the metadata is sound (leaked clusters only waste
 * space); throws when the image is corrupt or cannot be checked.
 */
export async function checkImage(imagePath: string): Promise<CheckResult> {
  const file = await existingFile(imagePath, 'Disk image');
  // -f qcow2: a file whose header is damaged would otherwise be probed as raw and "pass".
  const result = await run('qemu-img', ['check', '--output=json', '-U', '-f', 'qcow2', file], { reject: false });
  if (result.exitCode === CHECK_EXIT.clean || result.exitCode === CHECK_EXIT.leaksOnly || result.exitCode === CHECK_EXIT.corrupt) {
    const check = toCheckResult(parseJson<QemuImgCheckJson>(result.stdout, `qemu-img check ${file}`));
    if (result.exitCode === CHECK_EXIT.corrupt || check.corruptions > 0) {
      throw new Error(
        `${file} is corrupt: qemu-img check found ${check.corruptions} corruption${check.corruptions === 1 ? '' : 's'}` +
          `${check.leaks ? ` and ${check.leaks} leaked cluster${check.leaks === 1 ? '' : 's'}` : ''}. ` +
          `Delete it and rebuild the layer (and every layer after it).${detailLines(result.stderr)}`,
      );
    }
    return check;
  }
  if (result.exitCode === CHECK_EXIT.unsupported) {
    throw new Error(`qemu-img cannot check ${file}: ${qemuReason(result.stderr)}`);
  }
  const reason = qemuReason(result.stderr || result.stdout);
  // Opening fails when the file itself is damaged or a backing file is missing; name the culprit.
  throw await chainError(file, reason, `qemu-img check could not open ${file}: ${reason}`);
}

// qemu joins a relative backing name to its overlay's folder as is (`.../worker/../tiny/10_hello.qcow2`): normalised, so paths compare and print plainly.
function toImageInfo(json: QemuImgInfoJson): DiskImageInfo {
  const info: DiskImageInfo = {
    filename: normalizeLocal(json.filename),
    format: json.format,
    virtualSize: json['virtual-size'],
    actualSize: json['actual-size'] ?? 0,
  };
  if (json['cluster-size'] !== undefined) info.clusterSize = json['cluster-size'];
  if (json['backing-filename'] !== undefined) info.backingFile = json['backing-filename'];
  if (json['full-backing-filename'] !== undefined) info.fullBackingFile = normalizeLocal(json['full-backing-filename']);
  if (json['backing-filename-format'] !== undefined) info.backingFormat = json['backing-filename-format'];
  if (json['dirty-flag'] !== undefined) info.dirty = json['dirty-flag'];
  const corrupt = json['format-specific']?.data?.corrupt;
  if (corrupt !== undefined) info.corrupt = corrupt;
  return info;
}

/** A local absolute path without `..` parts; anything else (a `json:` source name) as qemu gave it. */
function normalizeLocal(file: string): string {
  return path.isAbsolute(file) ? path.normalize(file) : file;
}

function toCheckResult(json: QemuImgCheckJson): CheckResult {
  const check: CheckResult = {
    filename: json.filename,
    format: json.format,
    leaks: json.leaks ?? 0,
    corruptions: json.corruptions ?? 0,
    checkErrors: json['check-errors'],
  };
  if (json['image-end-offset'] !== undefined) check.imageEndOffset = json['image-end-offset'];
  if (json['total-clusters'] !== undefined) check.totalClusters = json['total-clusters'];
  if (json['allocated-clusters'] !== undefined) check.allocatedClusters = json['allocated-clusters'];
  if (json['fragmented-clusters'] !== undefined) check.fragmentedClusters = json['fragmented-clusters'];
  return check;
}

/**
 * Walks the chain one file at a time (info without backing files never
 * fails on a broken link) to find which link is broken, and says so in
 * terms of the file and the overlay that points at it.
 */
async function chainError(top: string, reason: string, fallback = `qemu-img cannot open the backing chain of ${top}: ${reason}`): Promise<Error> {
  let current = top;
  let overlay: { file: string; backingFile: string; backingFormat?: string } | undefined;
  for (let depth = 0; depth < MAX_CHAIN_LENGTH; depth += 1) {
    const described = overlay ? `Backing file ${current} of ${overlay.file} (which names it "${overlay.backingFile}")` : `Disk image ${current}`;
    try {
      await fs.access(current);
    } catch {
      return new Error(`${described} is missing. Restore it, or rebuild ${overlay ? overlay.file : current} and every layer after it.`);
    }
    let info: DiskImageInfo;
    try {
      info = await imageInfo(current);
    } catch (error) {
      return new Error(`${described} cannot be read: ${error instanceof CommandError ? qemuReason(error.output) : (error as Error).message}`);
    }
    const expectedFormat = overlay ? (overlay.backingFormat ?? 'qcow2') : 'qcow2';
    if (info.format !== expectedFormat) {
      // A qcow2 whose header was overwritten is probed as raw: the header is what is damaged.
      return new Error(
        `${described} is not a valid ${expectedFormat} image (qemu-img reads it as ${info.format}; its header is damaged): ${reason}. ` +
          `Delete it and rebuild it and every layer after it.`,
      );
    }
    if (!info.backingFile || !info.fullBackingFile) break;
    overlay = { file: current, backingFile: info.backingFile, backingFormat: info.backingFormat };
    current = info.fullBackingFile;
  }
  return new Error(fallback);
}

/** qemu-img's message without its `qemu-img: ` prefixes, last lines only. */
function qemuReason(output: string): string {
  return tail(output.replace(/^qemu-img: /gm, ''), 3) || 'no message';
}

function detailLines(stderr: string): string {
  return stderr.trim() ? `\n${tail(stderr, 10)}` : '';
}

export async function existingFile(file: string, what: string): Promise<string> {
  const absolute = path.resolve(file);
  try {
    await fs.access(absolute);
  } catch {
    throw new Error(`${what} ${absolute} does not exist`);
  }
  return absolute;
}

function parseJson<T>(text: string, source: string): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new Error(`${source} printed something other than JSON: ${tail(text, 5) || '(nothing)'}`);
  }
}

const QCOW2_MAGIC = 0x514649fb; // 'QFI\xfb'

/**
 * The virtual size from a qcow2 header (big-endian u64 at offset 24),
 * read without qemu-img, which would also open the backing chain.
 */
export async function qcow2VirtualSize(file: string): Promise<number> {
  const handle = await fs.open(file, 'r');
  try {
    const header = Buffer.alloc(32);
    const { bytesRead } = await handle.read(header, 0, 32, 0);
    if (bytesRead < 32 || header.readUInt32BE(0) !== QCOW2_MAGIC) throw new Error(`${file} is not a qcow2 file (no qcow2 header).`);
    return Number(header.readBigUInt64BE(24));
  } finally {
    await handle.close();
  }
}
