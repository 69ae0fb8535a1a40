import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { writeFileAtomic } from '../util/atomic-file';
import { sha256File } from '../cache-identity/digest';
import { run } from '../util/exec';
import { type OvfMachine, ovfDescriptor } from './ovf';
import { imageInfo } from '../disk/qcow2-info';
import type { Qcow2Compat } from '../disk/qcow2';
import { partialPathFor } from '../image/dist-layout';

/**
 * Writes an image's layer chain as one standalone disk file: `qemu-img
 * convert` reads the chain through its backing files and writes every
 * layer's data into one file with no backing file, in the format the target
 * platform wants. The file is written under a temporary name in the output
 * folder and renamed only when complete, with `<file>.sha256` beside it, so
 * an interrupted export never leaves a file that looks finished.
 */
export const EXPORT_FORMATS = ['qcow2', 'raw', 'vmdk', 'vhdx', 'vdi', 'vpc', 'ova'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

/** File name extension for each format (vpc is Microsoft's VHD). */
export const EXPORT_EXTENSIONS: Record<ExportFormat, string> = {
  qcow2: 'qcow2',
  raw: 'raw',
  vmdk: 'vmdk',
  vhdx: 'vhdx',
  vdi: 'vdi',
  vpc: 'vhd',
  ova: 'ova',
};

export interface ExportOptions {
  format: ExportFormat;
  /** qcow2: compress clusters with zstd (zlib at compat 0.10, whose qcow2 version has no zstd). */
  compress: boolean;
  /** qcow2: the compatibility level of the file (image.json's qcow2Compat). Default: qemu-img's. */
  qcow2Compat?: Qcow2Compat;
  /** vmdk: monolithicSparse (default, what qemu and VMware Workstation open) or streamOptimized (compressed, for import and OVA). */
  vmdkSubformat?: 'monolithicSparse' | 'streamOptimized';
  /** ova: what the OVF descriptor asks the importing hypervisor for. Default 2 CPUs, 1024 MiB. */
  machine?: OvfMachine;
  /** Show qemu-img's progress (`-p`) on the terminal. */
  progress: boolean;
  /** Write `<file>.sha256` (one more read of the whole file). Default true. */
  sha256?: boolean;
  signal?: AbortSignal;
}

/**
 * The `qemu-img convert` arguments for one export. `-W -m 16` let qemu-img
 * compress on several threads; without compression they slow it down
 * (docs/benchmarks.md, "Flatten against a bare qemu-img convert"), so only
 * compressed exports use them.
 */
export function convertArguments(
  source: string,
  target: string,
  options: Pick<ExportOptions, 'format' | 'compress' | 'vmdkSubformat' | 'progress' | 'qcow2Compat'>,
): string[] {
  const progress = options.progress ? ['-p'] : [];
  const common = ['convert', ...progress, '-f', 'qcow2'];
  switch (options.format) {
    case 'qcow2': {
      // qcow2 version 2 (compat 0.10) compresses with zlib only.
      const qcow2Options = [
        ...(options.qcow2Compat ? [`compat=${options.qcow2Compat}`] : []),
        ...(options.compress && options.qcow2Compat !== '0.10' ? ['compression_type=zstd'] : []),
      ];
      const create = qcow2Options.length ? ['-o', qcow2Options.join(',')] : [];
      return options.compress
        ? ['convert', ...progress, '-W', '-m', '16', '-f', 'qcow2', '-O', 'qcow2', '-c', ...create, source, target]
        : [...common, '-O', 'qcow2', ...create, source, target];
    }
    case 'raw':
      // Zero areas are left as holes: the raw file stays sparse.
      return [...common, '-O', 'raw', '-S', '4k', source, target];
    case 'vmdk':
      return [...common, '-O', 'vmdk', '-o', `subformat=${options.vmdkSubformat ?? 'monolithicSparse'}`, source, target];
    case 'ova':
      return [...common, '-O', 'vmdk', '-o', 'subformat=streamOptimized', source, target];
    case 'vhdx':
      return [...common, '-O', 'vhdx', '-o', 'subformat=dynamic', source, target];
    case 'vdi':
      return [...common, '-O', 'vdi', source, target];
    case 'vpc':
      // force_size keeps the exact virtual size (Azure and Hyper-V want whole MiB, which vmlb's sizes are).
      return [...common, '-O', 'vpc', '-o', 'subformat=dynamic,force_size=on', source, target];
  }
}

/** `<hex>  <name>`: the line `sha256sum -c` reads. */
export function sha256Line(hex: string, file: string): string {
  return `${hex}  ${path.basename(file)}\n`;
}

/**
 * Exports `chain` (the top qcow2 of a chain) to `output`. Returns the
 * sha256 of the file written.
 */
export async function exportDisk(chain: string, output: string, options: ExportOptions): Promise<{ sha256?: string }> {
  const folder = path.dirname(output);
  await fs.mkdir(folder, { recursive: true });
  const stage = partialPathFor(output, `${process.pid}.${randomBytes(3).toString('hex')}`);
  await fs.rm(output, { force: true });
  await fs.rm(`${output}.sha256`, { force: true });
  try {
    if (options.format === 'ova') {
      await fs.mkdir(stage);
      await writeOva(chain, stage, output, options);
    } else {
      await run('qemu-img', convertArguments(chain, stage, options), { stream: options.progress, signal: options.signal });
    }
    options.signal?.throwIfAborted();
    const file = options.format === 'ova' ? path.join(stage, 'image.ova') : stage;
    const sha256 = options.sha256 === false ? undefined : await sha256File(file);
    options.signal?.throwIfAborted();
    await fs.rename(file, output);
    // Not synced, as qemu-img does not sync the export itself (see writeFileAtomic).
    if (sha256) await writeFileAtomic(`${output}.sha256`, sha256Line(sha256, output), { sync: false });
    return { sha256 };
  } finally {
    await fs.rm(stage, { recursive: true, force: true });
  }
}

/**
 * An OVA: a tar (ustar, as the OVF standard asks) holding the OVF
 * descriptor first, then its manifest of sha256 sums, then the
 * streamOptimized vmdk, which VirtualBox and VMware import.
 */
async function writeOva(chain: string, stage: string, output: string, options: ExportOptions): Promise<void> {
  const base = path.basename(output).replace(/\.ova$/, '');
  const vmdkName = `${base}-disk1.vmdk`;
  const ovfName = `${base}.ovf`;
  const mfName = `${base}.mf`;
  const vmdk = path.join(stage, vmdkName);
  await run('qemu-img', convertArguments(chain, vmdk, { ...options, format: 'ova' }), { stream: options.progress, signal: options.signal });
  options.signal?.throwIfAborted();
  const { virtualSize } = await imageInfo(chain);
  const vmdkSize = (await fs.stat(vmdk)).size;
  if (vmdkSize >= 8 * 1024 ** 3) {
    throw new Error(`The OVA's disk is ${vmdkSize} bytes; ustar, the tar format OVF requires, holds files under 8 GiB. Export --format vmdk instead.`);
  }
  const ovf = ovfDescriptor({ name: base, vmdkFile: vmdkName, vmdkSize, capacity: virtualSize, machine: options.machine ?? { cpus: 2, memoryMiB: 1024 } });
  await fs.writeFile(path.join(stage, ovfName), ovf);
  const sums = [`SHA256(${ovfName})= ${await sha256File(path.join(stage, ovfName))}`, `SHA256(${vmdkName})= ${await sha256File(vmdk)}`];
  await fs.writeFile(path.join(stage, mfName), `${sums.join('\n')}\n`);
  await run(
    'tar',
    ['--format=ustar', '--owner=0', '--group=0', '--numeric-owner', '-cf', path.join(stage, 'image.ova'), '-C', stage, ovfName, mfName, vmdkName],
    {
      signal: options.signal,
    },
  );
}
