import * as path from 'node:path';
import { formatBytes, parseSize } from '../util/units';
import {
  type CacheMountHint,
  type SecretHint,
  conflictBetween,
  describeCacheMount,
  describeSecret,
  parseCacheMount,
  parseSecret,
} from './cache-and-secret-hints';

/** The two kinds of layer script. */
export type ScriptKind = 'build-layer' | 'modify-disk';
export const SCRIPT_KINDS: readonly ScriptKind[] = ['build-layer', 'modify-disk'];

export interface BindMountHint {
  /** Source, relative to the layer folder (validated to stay inside the workspace). */
  source: string;
  /** Absolute mount point inside the image. */
  target: string;
  /** `# chroot-bind-mount-rw`: bound read-write; its content is not part of the layer's key. */
  readWrite?: true;
}

/** `# project-output <project>[:<target>] <path in image>`: another Nx project's target output, read-only in the chroot. */
export interface ProjectOutputHint {
  /** Nx project name, e.g. `greeter`. */
  project: string;
  /** Its target whose output the layer ships; default `build`. */
  target: string;
  /** Absolute mount point inside the image. */
  mountPoint: string;
}

export interface PartitionMountHint {
  /** 1-based partition number on the image's disk. */
  partition: number;
  /** Absolute mount point inside the image. */
  target: string;
}

/**
 * What a layer script asks of vmlb through comment lines such as
 * `# nocache`. Every hint is a whole comment line: `#`, optional spaces,
 * the hint name, then its arguments separated by spaces. After the
 * arguments, the rest of the line is a comment when it starts with `(` or
 * `#`; nocache and noshare ignore the rest of their line, unless it starts
 * with another hint's name.
 */
export interface ScriptHints {
  /** Rebuild on every run; never stored in any cache. */
  nocache: boolean;
  /** Cache on this machine only; never uploaded to a shared cache. */
  noshare: boolean;
  /** `# disk-size 20G` (modify-disk): the new overlay's virtual size in bytes. */
  diskSize?: number;
  /** `# chroot-bind-mount <src> <dst>` and `# chroot-bind-mount-rw <src> <dst>` (build-layer). */
  bindMounts: BindMountHint[];
  /** `# chroot-mount <partition> <dst>` (build-layer). */
  partitionMounts: PartitionMountHint[];
  /** `# rebuild-every 7d`: the layer's key changes once per this many seconds. */
  rebuildEvery?: number;
  /** `# project-output <project>[:<target>] <dst>` (build-layer): built first, part of the key, bound read-only. */
  projectOutputs: ProjectOutputHint[];
  /** `# disk-devices` (build-layer): the image's disk and partitions as /dev/vmlb-disk, /dev/vmlb-disk1..., for bootloaders. */
  diskDevices?: boolean;
  /** `# cache-mount <dst> [id=<id>]` (build-layer): a cache folder of this machine, outside the layer and its key. */
  cacheMounts?: CacheMountHint[];
  /** `# secret <name> <dst> [share]` (build-layer): a value supplied at build time, in a tmpfs while the script runs; noshare unless `share`. */
  secrets?: SecretHint[];
}

export const HINT_NAMES = [
  'nocache',
  'noshare',
  'disk-size',
  'chroot-bind-mount',
  'chroot-bind-mount-rw',
  'chroot-mount',
  'rebuild-every',
  'project-output',
  'disk-devices',
  'cache-mount',
  'secret',
] as const;
type HintName = (typeof HINT_NAMES)[number];

/** How many arguments each hint takes: what follows them is a comment, or a mistake. */
const HINT_ARITY: Record<HintName, number> = {
  nocache: 0,
  noshare: 0,
  'disk-size': 1,
  'chroot-bind-mount': 2,
  'chroot-bind-mount-rw': 2,
  'chroot-mount': 2,
  'rebuild-every': 1,
  'project-output': 2,
  'disk-devices': 0,
  // Their optional last words (id=<id>, share) never start with ( or #: a comment after the required ones is one.
  'cache-mount': 1,
  secret: 2,
};

/** The hints vm-layer-builder knew without arguments, whose own examples have prose after them: the rest of their line is a comment. */
const FREE_TEXT_HINTS: readonly HintName[] = ['nocache', 'noshare'];

/** Where a comment may start after a hint's arguments. */
const TRAILING_COMMENT = /^[(#]/;

const HINT_LINE = new RegExp(`^#\\s*(${HINT_NAMES.join('|')})(?=\\s|$)(.*)$`);

const HINT_USAGE: Record<HintName, string> = {
  nocache: '# nocache',
  noshare: '# noshare',
  'disk-size': '# disk-size <size>, e.g. # disk-size 20G',
  'chroot-bind-mount': '# chroot-bind-mount <path in the workspace, relative to the layer folder> <absolute path in image>',
  'chroot-bind-mount-rw': '# chroot-bind-mount-rw <path in the workspace outside the layer folder, relative to it> <absolute path in image>',
  'chroot-mount': '# chroot-mount <partition number, e.g. 2 or p2> <absolute path in image>',
  'rebuild-every': '# rebuild-every <period>, e.g. # rebuild-every 7d (units: h, d, w)',
  'project-output': '# project-output <project>[:<target>] <absolute path in image>, e.g. # project-output greeter:build /opt/greeter',
  'disk-devices': '# disk-devices',
  'cache-mount': '# cache-mount <absolute path in image> [id=<id>], e.g. # cache-mount /var/cache/apt/archives',
  secret: '# secret <name> <path under /run> [share], e.g. # secret apt_token /run/secrets/apt_token',
};

/** Nx project and target names as a hint may give them (`@scope/app`, `my-app`, `build:prod` is not one). */
const PROJECT_NAME = /^[A-Za-z0-9@][A-Za-z0-9@._/-]*$/;
const TARGET_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** Seconds in each unit a `# rebuild-every` period may use. */
const PERIOD_UNITS: Record<string, number> = { h: 3600, d: 86_400, w: 604_800 };

const HINT_KINDS: Partial<Record<HintName, ScriptKind>> = {
  'disk-size': 'modify-disk',
  'chroot-bind-mount': 'build-layer',
  'chroot-bind-mount-rw': 'build-layer',
  'chroot-mount': 'build-layer',
  'project-output': 'build-layer',
  'disk-devices': 'build-layer',
  'cache-mount': 'build-layer',
  secret: 'build-layer',
};

/** A script whose hints cannot be honoured; the message names file, line and fix. */
export class HintError extends Error {
  constructor(scriptPath: string, line: number, problem: string) {
    super(`${scriptPath}:${line}: ${problem}`);
    this.name = 'HintError';
  }
}

/**
 * Reads the hints of a layer script. `scriptPath` is the script as the user
 * sees it, relative to the workspace: it names the script in messages, and
 * a bind source that climbs out of the workspace from its folder is refused
 * here (given absolute, that check is left to the build's, on real paths).
 */
export function parseHints(scriptText: string, scriptPath: string, kind: ScriptKind): ScriptHints {
  const hints: ScriptHints = { nocache: false, noshare: false, bindMounts: [], partitionMounts: [], projectOutputs: [] };
  const lines = scriptText.split(/\r?\n/);
  lines.forEach((rawLine, index) => {
    const match = HINT_LINE.exec(rawLine.trim());
    if (!match) return;
    const name = match[1] as HintName;
    const words = match[2].trim() === '' ? [] : match[2].trim().split(/\s+/);
    const lineNumber = index + 1;
    const fail = (problem: string): never => {
      throw new HintError(scriptPath, lineNumber, `${problem} (usage: ${HINT_USAGE[name]})`);
    };
    const args = hintArguments(name, words, fail);
    const wrongCount = (expected: string): never =>
      fail(
        `'${name}' takes ${expected}, got ${args.length} arguments` +
          (args.length > HINT_ARITY[name] ? ` ('${args.join(' ')}'); text after the arguments is a comment only when it starts with ( or #` : ''),
      );
    const requiredKind = HINT_KINDS[name];
    if (requiredKind && requiredKind !== kind) {
      fail(`the '${name}' hint only applies to ${requiredKind} scripts, and this is a ${kind} script`);
    }
    switch (name) {
      case 'nocache':
      case 'noshare':
        hints[name] = true;
        break;
      case 'disk-size': {
        if (args.length !== 1) wrongCount('one size');
        const bytes = parseSize(args[0]);
        if (bytes === undefined) fail(`'${args[0]}' is not a size`);
        hints.diskSize = bytes;
        break;
      }
      case 'chroot-bind-mount':
      case 'chroot-bind-mount-rw': {
        if (args.length !== 2) wrongCount('a source and a target');
        const readWrite = name === 'chroot-bind-mount-rw';
        const source = checkBindSource(args[0], scriptPath, readWrite, fail);
        hints.bindMounts.push({ source, target: checkImagePath(args[1], fail), ...(readWrite ? { readWrite } : {}) });
        break;
      }
      case 'chroot-mount': {
        if (args.length !== 2) wrongCount('a partition number and a target');
        // `p2` as well as `2`: the suffix of a partition's device (/dev/nbd0p2).
        const partition = Number(/^p?([1-9][0-9]*)$/.exec(args[0])?.[1]);
        if (!Number.isSafeInteger(partition)) fail(`'${args[0]}' is not a partition number (1, 2, ... or p1, p2, ...)`);
        hints.partitionMounts.push({ partition, target: checkImagePath(args[1], fail) });
        break;
      }
      case 'rebuild-every': {
        if (args.length !== 1) wrongCount('one period');
        hints.rebuildEvery = parsePeriod(args[0]) ?? fail(`'${args[0]}' is not a period`);
        break;
      }
      case 'disk-devices':
        if (args.length) fail(`'disk-devices' takes no arguments, got '${args.join(' ')}'; text after it is a comment only when it starts with ( or #`);
        hints.diskDevices = true;
        break;
      case 'project-output': {
        if (args.length !== 2) wrongCount('a project (with an optional :target) and a target path');
        const [project, target = 'build', ...rest] = args[0].split(':');
        if (rest.length || !PROJECT_NAME.test(project) || !TARGET_NAME.test(target)) fail(`'${args[0]}' is not <project> or <project>:<target>`);
        hints.projectOutputs.push({ project, target, mountPoint: checkImagePath(args[1], fail) });
        break;
      }
      case 'cache-mount':
      case 'secret': {
        if (name === 'cache-mount' && (args.length < 1 || args.length > 2)) wrongCount('a path and an optional id=<id>');
        if (name === 'secret' && (args.length < 2 || args.length > 3)) wrongCount("a name, a path under /run and an optional 'share'");
        const checkTarget = (target: string) => checkImagePath(target, fail);
        if (name === 'cache-mount') (hints.cacheMounts ??= []).push(parseCacheMount(args, checkTarget, fail));
        else (hints.secrets ??= []).push(parseSecret(args, checkTarget, fail));
        const conflict = conflictBetween(hints.cacheMounts ?? [], hints.secrets ?? []);
        if (conflict) fail(conflict);
        break;
      }
    }
  });
  // What a secret unlocked (a private repository's packages) may be in the layer: kept on this machine unless the hint says share.
  if (hints.secrets?.some((secret) => !secret.share)) hints.noshare = true;
  return hints;
}

/**
 * A hint's arguments without the comment after them. Text after a hint's
 * arguments is a comment only when it starts with `(` or `#`, so that a
 * mistyped extra argument is still reported; nocache and noshare take the
 * whole rest of their line as a comment, except another hint.
 */
function hintArguments(name: HintName, words: string[], fail: (problem: string) => never): string[] {
  const arity = HINT_ARITY[name];
  if (FREE_TEXT_HINTS.includes(name)) {
    const other = HINT_NAMES.find((hint) => hint === words[0]);
    if (other) fail(`one hint per line: put '# ${other}' on a line of its own`);
    return [];
  }
  const comment = words.findIndex((word, index) => index >= arity && TRAILING_COMMENT.test(word));
  return comment === -1 ? words : words.slice(0, comment);
}

/**
 * A bind source as written: relative to the layer folder, and inside the
 * workspace (it is part of the layer's key, and nothing else of the host
 * may reach the script); a read-write one outside the layer folder, whose
 * files stay the layer's read-only input.
 */
function checkBindSource(source: string, scriptPath: string, readWrite: boolean, fail: (problem: string) => never): string {
  if (path.isAbsolute(source)) fail(`bind-mount source '${source}' must be relative to the layer folder, and inside the workspace`);
  const normalized = path.posix.normalize(source).replace(/(.)\/$/, '$1');
  const inLayerFolder = normalized !== '..' && !normalized.startsWith('../');
  if (!path.isAbsolute(scriptPath)) {
    const fromWorkspace = path.posix.normalize(path.posix.join(path.posix.dirname(scriptPath), normalized));
    if (fromWorkspace === '..' || fromWorkspace.startsWith('../')) {
      fail(`bind-mount source '${source}' leads out of the workspace; bind sources are paths inside the workspace, relative to the layer folder`);
    }
  }
  if (readWrite && (inLayerFolder || /^\.\.(\/\.\.)*$/.test(normalized))) {
    fail(
      `read-write bind-mount source '${source}' ${inLayerFolder ? 'is in' : 'holds'} the layer folder, whose files are the layer's input and stay read-only; ` +
        `use a folder beside it, e.g. ../cache`,
    );
  }
  return normalized;
}

/** A period such as `7d` in seconds; undefined when it is not one. */
export function parsePeriod(text: string): number | undefined {
  const match = /^([1-9][0-9]*)([hdw])$/.exec(text);
  return match ? Number(match[1]) * PERIOD_UNITS[match[2]] : undefined;
}

function checkImagePath(target: string, fail: (problem: string) => never): string {
  if (!path.isAbsolute(target)) fail(`mount target '${target}' must be an absolute path inside the image`);
  const normalized = path.posix.normalize(target).replace(/(.)\/$/, '$1');
  if (normalized === '/') fail(`mount target '${target}' would hide the image's root`);
  return normalized;
}

/** Short labels for listings and target descriptions, e.g. `nocache, disk-size 20 GiB`. */
export function describeHints(hints: ScriptHints): string[] {
  const labels: string[] = [];
  if (hints.nocache) labels.push('nocache');
  if (hints.noshare) labels.push('noshare');
  if (hints.diskSize !== undefined) labels.push(`disk-size ${formatBytes(hints.diskSize)}`);
  for (const mount of hints.bindMounts) labels.push(`chroot-bind-mount${mount.readWrite ? '-rw' : ''} ${mount.source} ${mount.target}`);
  if (hints.diskDevices) labels.push('disk-devices');
  for (const output of hints.projectOutputs) labels.push(`project-output ${output.project}:${output.target} ${output.mountPoint}`);
  for (const mount of hints.partitionMounts) labels.push(`chroot-mount ${mount.partition} ${mount.target}`);
  if (hints.rebuildEvery !== undefined) labels.push(`rebuild-every ${formatPeriod(hints.rebuildEvery)}`);
  labels.push(...(hints.cacheMounts ?? []).map(describeCacheMount), ...(hints.secrets ?? []).map(describeSecret));
  return labels;
}

/** A period in seconds, in days where it is whole days (`7d`, `14d`), else in hours (`12h`). */
export function formatPeriod(seconds: number): string {
  return seconds % PERIOD_UNITS.d === 0 ? `${seconds / PERIOD_UNITS.d}d` : `${seconds / PERIOD_UNITS.h}h`;
}
