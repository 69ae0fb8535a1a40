import { readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { hostname } from 'node:os';
import { qcow2VirtualSize } from '../disk/qcow2-info';

/**
 * How a layer (or base) file came to be: written into its manifest, so it
 * travels with the layer through every cache. `nx run image-<x>:layers`
 * reads it to tell the current task hash from a stale one, a layer built in
 * this workspace from one restored from a cache, and to show sizes and build
 * times for layers whose qcow2 is not on this machine.
 */
export interface BuildRecord {
  /** The Nx task hash the build ran under (NX_TASK_HASH); null outside Nx or under --skip-nx-cache. */
  taskHash: string | null;
  /** Host name of the machine that built it. */
  host: string;
  /** Absolute workspace root it was built in. */
  workspace: string;
  /** When the build finished (ISO 8601). */
  finishedAt: string;
  /** How long the task took, in seconds. */
  seconds: number;
  /** Length of the qcow2 file in bytes (the overlay alone, not its backing chain). */
  fileSize: number;
  /** Size of the disk the guest sees, in bytes. */
  virtualSize: number;
}

export async function makeBuildRecord(file: string, options: { workspaceRoot: string; startedAt: number; env?: NodeJS.ProcessEnv }): Promise<BuildRecord> {
  const env = options.env ?? process.env;
  return {
    taskHash: env.NX_TASK_HASH || null,
    host: hostname(),
    workspace: options.workspaceRoot,
    finishedAt: new Date().toISOString(),
    seconds: Math.round((Date.now() - options.startedAt) / 100) / 10,
    fileSize: (await stat(file)).size,
    virtualSize: await qcow2VirtualSize(file),
  };
}

/** Whether a record says the file was built by this machine in this workspace (rather than restored from a cache). */
export function builtHere(record: Pick<BuildRecord, 'host' | 'workspace'>, workspaceRoot: string): boolean {
  return record.host === hostname() && record.workspace === workspaceRoot;
}

/** The build record in a manifest file, or undefined when the file is missing, unreadable or has none. */
export function readBuildRecord(manifestFile: string): BuildRecord | undefined {
  try {
    const build = (JSON.parse(readFileSync(manifestFile, 'utf8')) as { build?: unknown }).build;
    return isBuildRecord(build) ? build : undefined;
  } catch {
    return undefined;
  }
}

export function isBuildRecord(value: unknown): value is BuildRecord {
  if (typeof value !== 'object' || value === null) return false;
  const record = value as Record<string, unknown>;
  return (
    (record.taskHash === null || typeof record.taskHash === 'string') &&
    typeof record.host === 'string' &&
    typeof record.workspace === 'string' &&
    typeof record.finishedAt === 'string' &&
    typeof record.seconds === 'number' &&
    typeof record.fileSize === 'number' &&
    typeof record.virtualSize === 'number'
  );
}
