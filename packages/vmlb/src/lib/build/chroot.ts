import { mkdirSync, rmSync, statSync, symlinkSync } from 'node:fs';
import * as path from 'node:path';
import { type RunResult, run } from '../util/exec';
import type { BindMountHint } from '../image/hints';
import { resolveInRoot } from '../disk/root-path';
import { shellQuote as quote } from '../util/shell-quote';
import { bindSource } from './bind-sources';
import type { ProjectOutputMount } from './project-outputs';
import type { DiskDevices } from '../disk/disk-devices';
import { makeFoldersInRoot, removeMadeFolders } from './image-root-edits';
import { droppedCapabilities } from './sandbox-capabilities';
import { diskDeviceLines, resolvConfLines, secretLines } from './sandbox-mount-lines';
import { type FailureHold, INTERACTIVE_SHELL, failureHoldLine, sandboxTerminalsLines, withTerminalSettingsKept } from './sandbox-terminal';

/** Mount points a chroot needs, created (as empty folders) when an image lacks them. */
const STANDARD_MOUNT_POINTS = ['/proc', '/sys', '/dev', '/tmp', '/run', '/mnt'];

/**
 * `unshare` arguments for a layer script's own mount and PID namespaces:
 * mounts made in them and processes left running end with the script, even
 * when it is killed.
 */
export const SCRIPT_NAMESPACES = ['--mount', '--propagation', 'private', '--pid', '--fork', '--kill-child', '--'] as const;

/**
 * Prefix for a command that must die with the process that starts it,
 * however that one ends (SIGKILL, the OOM killer): the kernel sends it
 * SIGKILL when its parent exits (PR_SET_PDEATHSIG, kept across exec).
 * `unshare --fork --kill-child` passes that on to the namespace's first
 * process, whose end ends every process of the PID namespace.
 */
export const DIE_WITH_PARENT = ['setpriv', '--pdeathsig', 'KILL'] as const;

/**
 * Entries of the script's /proc that reach the host kernel for a writing
 * root without any capability (sysctls, the SysRq trigger, IRQ affinity,
 * PCI config space, filesystem settings): bound read-only over themselves.
 * Without cap_sys_admin the script cannot remount them.
 */
const READ_ONLY_PROC_ENTRIES = ['sys', 'sysrq-trigger', 'irq', 'bus', 'fs'];

/**
 * Shell lines that drop, in a freshly unshared mount namespace, the copies of
 * other vmlb builds' mounts (anything under a `.vmlb/` work folder but our
 * own). A new mount namespace copies every mount of the host, including
 * another build's image root; that copy would keep the other filesystem
 * alive after its build unmounts it, so its last writes would only be
 * flushed after that build had stopped its storage daemon, and be lost.
 */
export function dropForeignBuildMounts(ownWorkDir: string): string {
  return [
    `own=${quote(`${ownWorkDir}/`)}`,
    'foreign=$(while read -r _ _ _ _ point _; do case "$point/" in "$own"*) ;; */.vmlb/*) echo "$point" ;; esac; done < /proc/self/mountinfo | sort -r)',
    'for point in $foreign; do umount --lazy "$point" 2>/dev/null || true; done',
  ].join('\n');
}

export interface ChrootRunOptions {
  /** Mounted root filesystem of the image. */
  root: string;
  /** This build's work folder: its mounts are kept, other builds' are dropped. */
  workDir: string;
  /** Layer folder on the host, bound read-only at /mnt. */
  layerDir: string;
  /** The workspace, which bind sources must not leave (checked again here, when they are mounted). */
  workspaceRoot: string;
  /** The script, relative to the layer folder (`build-layer`). */
  scriptName: string;
  /** `# chroot-bind-mount` and `# chroot-bind-mount-rw` hints; sources relative to the layer folder. */
  bindMounts: BindMountHint[];
  /** `# project-output` hints, found on the host (lib/build/project-outputs). */
  projectOutputs?: ProjectOutputMount[];
  /** `# disk-devices`: nodes of the disk and its partitions, copied into the sandbox's /dev. */
  diskDevices?: DiskDevices;
  /** `# chroot-mount` hints, already located on the disk. */
  partitionMounts: Array<{ device: string; offset: number; size: number; target: string }>;
  /** `# cache-mount` hints: host folders (lib/build/cache-mounts, locked by the caller) bound read-write. */
  cacheMounts?: Array<{ source: string; target: string }>;
  /** `# secret` hints with their values: written to the sandbox's /run tmpfs, mode 0400, read from our stdin (never a command line or the environment). */
  secrets?: Array<{ target: string; value: Buffer }>;
  /** Environment of the script (a clean one; see `scriptEnvironment`). */
  env: Record<string, string>;
  signal?: AbortSignal;
  /** What the image's /bin/sh runs instead of `cd /mnt && ./<scriptName>` (a shell command line): a shell, or a user's command. */
  command?: string;
  /** Give the command this process's terminal, through a terminal of its own (`script`): an interactive shell or program. */
  terminal?: boolean;
  /** When the command fails, keep its mounts as they are for a look (`VMLB_PAUSE_AT=failed`): see `FailureHold`. */
  onFailure?: FailureHold;
}

/**
 * A clean environment for layer scripts: nothing of the build host leaks in
 * but proxy settings and the variables image.json declares (`declared`,
 * already resolved; none of them is one set here).
 */
export function scriptEnvironment(
  imageName: string,
  layer: string,
  hostEnv: NodeJS.ProcessEnv = process.env,
  declared: Record<string, string> = {},
): Record<string, string> {
  const env: Record<string, string> = {
    ...declared,
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: '/root',
    LANG: 'C.UTF-8',
    DEBIAN_FRONTEND: 'noninteractive',
    VMLB_IMAGE: imageName,
    VMLB_LAYER: layer,
  };
  for (const name of ['http_proxy', 'https_proxy', 'ftp_proxy', 'no_proxy', 'all_proxy']) {
    for (const variant of [name, name.toUpperCase()]) {
      const value = hostEnv[variant];
      if (value !== undefined) env[variant] = value;
    }
  }
  if (hostEnv.TERM) env.TERM = hostEnv.TERM;
  return env;
}

/**
 * Runs a build-layer script as root in a sandbox made of the image: its own
 * mount, UTS, IPC and PID namespaces, the image root as the root of every
 * process in them, fewer capabilities, and the ways from there to the host
 * read-only. What it writes lands in the image, in the namespace's tmpfs
 * folders, or where the hints grant it; nothing else. When the script ends,
 * is killed, or the build process dies however it dies, the kernel drops
 * those mounts and every process the script left behind.
 *
 * 1. `setpriv --pdeathsig KILL unshare --mount --uts --ipc`: a shell of
 *    the host mounts, under the image root: /sys read-only, a private /dev
 *    (device nodes copied, not bound, so a chmod stays inside; devpts, shm),
 *    /tmp and /run as tmpfs, a read-only copy of the host's resolv.conf,
 *    the layer folder read-only at /mnt and the hints' mounts; all nosuid,
 *    nodev where a device is not the point.
 * 2. `setpriv --pdeathsig KILL unshare --pid --fork --kill-child`: the PID
 *    namespace's first process mounts its /proc, binds the entries that
 *    reach the host kernel (`READ_ONLY_PROC_ENTRIES`) read-only over
 *    themselves, leaves the terminal's session (no /dev/tty to push keys
 *    into) and becomes `capsh --chroot=<root> --drop=...`: from then on it
 *    and everything it starts have the image root as their root (so
 *    /proc/1/root is the image) and no capability to leave it (no
 *    sys_chroot, sys_admin), to undo a read-only mount, or to reach the
 *    kernel (`droppedCapabilities`).
 * 3. The image's `/bin/sh` runs `cd /mnt && ./build-layer`.
 *
 * The mount shell waits outside the PID namespace, so that once the script
 * is done it can flush the partitions mounted for it.
 */
export async function runInChroot(options: ChrootRunOptions): Promise<RunResult> {
  const { root } = options;
  const resolve = (imagePath: string) => resolveInRoot(root, imagePath);
  // Mount points the image lacks are made for the run and taken away after
  // it, so that the layer holds what its script did and nothing else. They
  // are found again after the script without following any symlink: the
  // script may have replaced a folder on the way with a link to the host.
  const mountPoints = [...STANDARD_MOUNT_POINTS, ...(options.cacheMounts ?? []).map((cache) => cache.target)];
  const madeFolders = mountPoints.flatMap((mountPoint) => makeFoldersInRoot(root, resolve(mountPoint)));
  try {
    return await runScriptInNamespace(options, resolve);
  } finally {
    removeMadeFolders(root, madeFolders);
  }
}

/** Device nodes of the script's /dev, copied from the host's (`cp -a` makes new nodes: a chmod in the sandbox changes only them). */
const DEVICE_NODES = ['null', 'zero', 'full', 'random', 'urandom', 'tty'];

/**
 * The rest of the script's /dev (pts/ and shm/ folders, the usual links),
 * made once per build in the work folder and copied with the device nodes
 * in one `cp -a`.
 */
function devTemplate(workDir: string): string[] {
  const template = path.join(workDir, 'dev-template');
  rmSync(template, { recursive: true, force: true });
  mkdirSync(path.join(template, 'pts'), { recursive: true });
  mkdirSync(path.join(template, 'shm'));
  const links: Array<[string, string]> = [
    ['ptmx', 'pts/ptmx'],
    ['fd', '/proc/self/fd'],
    ['stdin', '/proc/self/fd/0'],
    ['stdout', '/proc/self/fd/1'],
    ['stderr', '/proc/self/fd/2'],
  ];
  for (const [link, target] of links) symlinkSync(target, path.join(template, link));
  return ['pts', 'shm', ...links.map(([link]) => link)].map((entry) => path.join(template, entry));
}

async function runScriptInNamespace(options: ChrootRunOptions, resolve: (imagePath: string) => string): Promise<RunResult> {
  const { root } = options;

  const lines = ['set -eu', dropForeignBuildMounts(options.workDir)];
  const mount = (...args: string[]) => lines.push(`mount ${args.map(quote).join(' ')}`);
  mount('-t', 'sysfs', '-o', 'ro,nosuid,noexec,nodev', 'sysfs', resolve('/sys'));
  const dev = resolve('/dev');
  mount('-t', 'tmpfs', '-o', 'nosuid,noexec,mode=0755,size=16m', 'vmlb-dev', dev);
  lines.push(`cp -a ${[...DEVICE_NODES.map((node) => `/dev/${node}`), ...devTemplate(options.workDir)].map(quote).join(' ')} ${quote(`${dev}/`)}`);
  lines.push(...diskDeviceLines(options.diskDevices, dev));
  mount('-t', 'devpts', '-o', 'newinstance,ptmxmode=0666,mode=0620,nosuid,noexec', 'devpts', `${dev}/pts`);
  // A terminal made by `script` outside the chroot comes from the sandbox's devpts, so inside it has a name (tty, ssh, sudo).
  if (options.terminal || options.onFailure?.shell) lines.push(...sandboxTerminalsLines(dev));
  mount('-t', 'tmpfs', '-o', 'nosuid,nodev', 'shm', `${dev}/shm`);
  mount('-t', 'tmpfs', '-o', 'nosuid,nodev,mode=1777', 'tmp', resolve('/tmp'));
  mount('-t', 'tmpfs', '-o', 'nosuid,nodev,mode=0755', 'run', resolve('/run'));
  lines.push(...secretLines(options.secrets ?? [], resolve('/run')));
  lines.push(...resolvConfLines(root, options.workDir));

  const mnt = resolve('/mnt');
  mount('--bind', '-o', 'ro,nosuid,nodev', options.layerDir, mnt);
  // A file or folder of the host at a path of the image (made when missing), read-only unless a hint asks otherwise.
  const bindHostPath = (source: string, imagePath: string, access: 'ro' | 'rw' = 'ro') => {
    const target = resolve(imagePath);
    lines.push(statSync(source).isDirectory() ? `mkdir -p ${quote(target)}` : `mkdir -p ${quote(path.dirname(target))}; touch ${quote(target)}`);
    mount('--bind', '-o', `${access},nosuid,nodev`, source, target);
  };
  const roots = { workspaceRoot: options.workspaceRoot, layerDir: options.layerDir };
  for (const hint of options.bindMounts) bindHostPath(bindSource(roots, hint), hint.target, hint.readWrite ? 'rw' : 'ro');
  for (const output of options.projectOutputs ?? []) bindHostPath(output.source, output.mountPoint);
  for (const cache of options.cacheMounts ?? []) bindHostPath(cache.source, cache.target, 'rw');
  for (const partition of options.partitionMounts) {
    const target = resolve(partition.target);
    lines.push(`mkdir -p ${quote(target)}`);
    // A loop mount made here is released by the kernel with the namespace.
    mount('-o', `loop,noatime,nosuid,nodev,offset=${partition.offset},sizelimit=${partition.size}`, partition.device, target);
  }

  const proc = resolve('/proc');
  // Not exec ./build-layer: the image's shell stays the namespace's first
  // process, which no exec of a setuid program can take PR_SET_PDEATHSIG from.
  const command = options.command ?? `cd /mnt && ./${options.scriptName}; exit $?`;
  const sandbox = (what: string, terminal: boolean) =>
    [...DIE_WITH_PARENT, 'unshare', '--pid', '--fork', '--kill-child', '--', '/bin/sh', '-c', pidNamespaceInit(root, proc, what, terminal)]
      .map(quote)
      .join(' ');
  // Not exec: once the script is done, the partitions mounted here are
  // flushed so a write error on them (a full disk under dist/) fails the
  // layer instead of vanishing with this namespace. The terminal kept for
  // a failure's shell (descriptors 3 and 4) is not the script's.
  lines.push(`status=0; ${sandbox(command, options.terminal === true)} 3<&- 4>&- || status=$?`);
  if (options.onFailure) lines.push(failureHoldLine(options.onFailure, sandbox(INTERACTIVE_SHELL, true)));
  for (const partition of options.partitionMounts) {
    const target = resolve(partition.target);
    lines.push(
      `if [ "$status" -eq 0 ] && ! sync --file-system ${quote(target)}; then echo ${quote(`vmlb: writes to partition mounted at ${partition.target} failed; the disk holding the layer is probably full`)} >&2; status=75; fi`,
    );
  }
  lines.push('exit "$status"');

  const interactive = options.terminal === true || options.onFailure?.shell === true;
  return withTerminalSettingsKept(interactive, () =>
    run(
      DIE_WITH_PARENT[0],
      [...DIE_WITH_PARENT.slice(1), 'unshare', '--mount', '--propagation', 'private', '--uts', '--ipc', '--', '/bin/sh', '-c', lines.join('\n')],
      {
        env: options.env,
        cleanEnv: true,
        // `# secret` values on the mount shell's stdin (a shell on the terminal gets none: it is no build).
        ...(options.secrets?.length && options.terminal !== true
          ? { input: options.secrets.map((secret) => `${secret.value.toString('base64')}\n`).join('') }
          : {}),
        stream: options.terminal !== true,
        inherit: options.terminal === true,
        passFds: options.onFailure?.shell ? [0, 1] : undefined,
        reject: false,
        signal: options.signal,
        // The mount shell dies at once, and the sandbox with it (its processes
        // die with their parents): a script gets no say in being stopped.
        killSignal: 'SIGKILL',
      },
    ),
  );
}

/**
 * The PID namespace's first process: it mounts its /proc, binds the
 * entries that reach the host kernel read-only, and becomes `capsh`, which
 * chroots and drops capabilities before the image's /bin/sh runs
 * `command`. Without a terminal it first leaves the caller's session (no
 * /dev/tty to push keys into); with one, util-linux `script` stays outside
 * the chroot and gives the command a terminal of its own, so keys pushed
 * back (TIOCSTI) reach that terminal, never the caller's.
 */
function pidNamespaceInit(root: string, proc: string, command: string, terminal: boolean): string {
  const capsh = ['capsh', `--chroot=${root}`, `--drop=${droppedCapabilities().join(',')}`, '--shell=/bin/sh', '--', '-c', command].map(quote).join(' ');
  return [
    'set -eu',
    `mount -t proc -o nosuid,noexec,nodev proc ${quote(proc)}`,
    `for entry in ${READ_ONLY_PROC_ENTRIES.join(' ')}; do if [ -e ${quote(proc)}/"$entry" ]; then mount --bind -o ro ${quote(proc)}/"$entry" ${quote(proc)}/"$entry"; fi; done`,
    terminal ? `exec script --quiet --return --command ${quote(capsh)} /dev/null` : `exec setsid ${capsh}`,
  ].join('\n');
}
