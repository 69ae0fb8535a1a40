import {
  type Stats,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  rmdirSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import * as path from 'node:path';
import { type RunResult, run } from '../util/exec';
import type { BindMountHint } from '../image/hints';
import { resolveInRoot } from '../disk/root-path';
import { shellQuote as quote } from '../util/shell-quote';

/**
 * The host path of `relative` (a path under the image root, as
 * `resolveInRoot` gave it before a script ran) only if every component is
 * still what it was meant to be: no symlink anywhere, every parent a real
 * folder. After a layer script has run, vmlb touches the image root only
 * through this, so a symlink the script planted (`/usr/sbin` -> a host
 * folder) can never lead vmlb's clean-up out of the image. The script's
 * processes are all gone by then (its PID namespace ended), so nothing
 * changes the tree between the check and the removal.
 */
export function unlinkedPathUnder(root: string, relative: string): { hostPath: string; stats: Stats } | undefined {
  const parts = relative.split('/').filter((part) => part && part !== '.');
  if (parts.includes('..')) return undefined;
  let current = root;
  let stats;
  for (const [index, part] of parts.entries()) {
    current = path.join(current, part);
    try {
      stats = lstatSync(current);
    } catch {
      return undefined;
    }
    if (stats.isSymbolicLink()) return undefined;
    if (index < parts.length - 1 && !stats.isDirectory()) return undefined;
  }
  return stats ? { hostPath: current, stats } : undefined;
}

/**
 * Creates the folders of `hostPath` (under `root`) that do not exist, one by
 * one; returns those it created, relative to the root, outermost first, so
 * that they can be taken away again (`removeMadeFolders`).
 */
function makeFoldersInRoot(root: string, hostPath: string): string[] {
  const relative = path.relative(root, hostPath);
  const made: string[] = [];
  let current = '';
  for (const part of relative.split('/').filter(Boolean)) {
    current = current ? `${current}/${part}` : part;
    if (existsSync(path.join(root, current))) continue;
    mkdirSync(path.join(root, current));
    made.push(current);
  }
  return made;
}

/**
 * Removes folders `makeFoldersInRoot` created, innermost first, when they
 * are still empty folders reached without a symlink; anything else now
 * belongs to the image and is left alone.
 */
function removeMadeFolders(root: string, made: readonly string[]): void {
  for (const relative of [...made].reverse()) {
    const found = unlinkedPathUnder(root, relative);
    if (!found?.stats.isDirectory()) continue;
    try {
      rmdirSync(found.hostPath);
    } catch {
      /* not empty: the script put something there */
    }
  }
}

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
 * Capabilities a layer script keeps: what package managers and maintainer
 * scripts use on files and users of the image (chown, chmod on any file,
 * setuid/setgid, file capabilities, signals, low ports, audit messages).
 * Every other one is dropped from its bounding set before the image's
 * shell starts: no mount or remount (sys_admin), chroot (sys_chroot, the
 * way out of a chroot), kernel modules, raw I/O, reboot or kexec, clock,
 * device nodes (mknod), network configuration or raw sockets on the host's
 * network (net_admin, net_raw), ptrace, the kernel log, open_by_handle_at
 * (dac_read_search), BPF, perf, MAC policy, audit control.
 */
export const KEPT_CAPABILITIES = [
  'cap_chown',
  'cap_dac_override',
  'cap_fowner',
  'cap_fsetid',
  'cap_kill',
  'cap_setgid',
  'cap_setuid',
  'cap_setpcap',
  'cap_linux_immutable',
  'cap_net_bind_service',
  'cap_net_broadcast',
  'cap_ipc_lock',
  'cap_ipc_owner',
  'cap_sys_nice',
  'cap_sys_resource',
  'cap_lease',
  'cap_audit_write',
  'cap_setfcap',
] as const;

/** Capability names by number (capability.h), as far as libcap 2.66 knows them. */
const CAPABILITY_NAMES = [
  'cap_chown', 'cap_dac_override', 'cap_dac_read_search', 'cap_fowner', 'cap_fsetid', 'cap_kill', 'cap_setgid', 'cap_setuid',
  'cap_setpcap', 'cap_linux_immutable', 'cap_net_bind_service', 'cap_net_broadcast', 'cap_net_admin', 'cap_net_raw', 'cap_ipc_lock',
  'cap_ipc_owner', 'cap_sys_module', 'cap_sys_rawio', 'cap_sys_chroot', 'cap_sys_ptrace', 'cap_sys_pacct', 'cap_sys_admin', 'cap_sys_boot',
  'cap_sys_nice', 'cap_sys_resource', 'cap_sys_time', 'cap_sys_tty_config', 'cap_mknod', 'cap_lease', 'cap_audit_write',
  'cap_audit_control', 'cap_setfcap', 'cap_mac_override', 'cap_mac_admin', 'cap_syslog', 'cap_wake_alarm', 'cap_block_suspend',
  'cap_audit_read', 'cap_perfmon', 'cap_bpf', 'cap_checkpoint_restore',
];

/**
 * Every capability the running kernel has but `KEPT_CAPABILITIES` (a newer
 * kernel's unknown ones by number), for `capsh --drop`.
 */
export function droppedCapabilities(lastCap = readLastCap()): string[] {
  const dropped: string[] = [];
  for (let number = 0; number <= lastCap; number++) {
    const name = CAPABILITY_NAMES[number] ?? String(number);
    if (!(KEPT_CAPABILITIES as readonly string[]).includes(name)) dropped.push(name);
  }
  return dropped;
}

let lastCapCache: number | undefined;
function readLastCap(): number {
  if (lastCapCache === undefined) {
    try {
      lastCapCache = Number(readFileSync('/proc/sys/kernel/cap_last_cap', 'utf8').trim());
    } catch {
      lastCapCache = CAPABILITY_NAMES.length - 1;
    }
  }
  return lastCapCache;
}

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
  /** The script, relative to the layer folder (`build-layer`). */
  scriptName: string;
  /** `# chroot-bind-mount` hints; sources relative to the layer folder. */
  bindMounts: BindMountHint[];
  /** `# chroot-mount` hints, already located on the disk. */
  partitionMounts: Array<{ device: string; offset: number; size: number; target: string }>;
  /** Environment of the script (a clean one; see `scriptEnvironment`). */
  env: Record<string, string>;
  signal?: AbortSignal;
}

/** A clean environment for layer scripts: nothing of the build host leaks in but proxy settings. */
export function scriptEnvironment(imageName: string, layer: string, hostEnv: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = {
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
  const madeFolders = STANDARD_MOUNT_POINTS.flatMap((mountPoint) => makeFoldersInRoot(root, resolve(mountPoint)));
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
  mount('-t', 'devpts', '-o', 'newinstance,ptmxmode=0666,mode=0620,nosuid,noexec', 'devpts', `${dev}/pts`);
  mount('-t', 'tmpfs', '-o', 'nosuid,nodev', 'shm', `${dev}/shm`);
  mount('-t', 'tmpfs', '-o', 'nosuid,nodev,mode=1777', 'tmp', resolve('/tmp'));
  mount('-t', 'tmpfs', '-o', 'nosuid,nodev,mode=0755', 'run', resolve('/run'));
  lines.push(...resolvConfLines(root, options.workDir));

  const mnt = resolve('/mnt');
  mount('--bind', '-o', 'ro,nosuid,nodev', options.layerDir, mnt);
  for (const hint of options.bindMounts) {
    const source = bindSource(options.layerDir, hint.source);
    const target = resolve(hint.target);
    lines.push(statSync(source).isDirectory() ? `mkdir -p ${quote(target)}` : `mkdir -p ${quote(path.dirname(target))}; touch ${quote(target)}`);
    mount('--bind', '-o', 'ro,nosuid,nodev', source, target);
  }
  for (const partition of options.partitionMounts) {
    const target = resolve(partition.target);
    lines.push(`mkdir -p ${quote(target)}`);
    // A loop mount made here is released by the kernel with the namespace.
    mount('-o', `loop,noatime,nosuid,nodev,offset=${partition.offset},sizelimit=${partition.size}`, partition.device, target);
  }

  const proc = resolve('/proc');
  const init = [
    'set -eu',
    `mount -t proc -o nosuid,noexec,nodev proc ${quote(proc)}`,
    `for entry in ${READ_ONLY_PROC_ENTRIES.join(' ')}; do if [ -e ${quote(proc)}/"$entry" ]; then mount --bind -o ro ${quote(proc)}/"$entry" ${quote(proc)}/"$entry"; fi; done`,
    // Not exec ./build-layer: the image's shell stays the namespace's first
    // process, which no exec of a setuid program can take PR_SET_PDEATHSIG from.
    `exec setsid capsh ${quote(`--chroot=${root}`)} ${quote(`--drop=${droppedCapabilities().join(',')}`)} --shell=/bin/sh -- -c ${quote(`cd /mnt && ./${options.scriptName}; exit $?`)}`,
  ].join('\n');
  // Not exec: once the script is done, the partitions mounted here are
  // flushed so a write error on them (a full disk under dist/) fails the
  // layer instead of vanishing with this namespace.
  lines.push(`status=0; ${[...DIE_WITH_PARENT, 'unshare', '--pid', '--fork', '--kill-child', '--', '/bin/sh', '-c', init].map(quote).join(' ')} || status=$?`);
  for (const partition of options.partitionMounts) {
    const target = resolve(partition.target);
    lines.push(
      `if [ "$status" -eq 0 ] && ! sync --file-system ${quote(target)}; then echo ${quote(`vmlb: writes to partition mounted at ${partition.target} failed; the disk holding the layer is probably full`)} >&2; status=75; fi`,
    );
  }
  lines.push('exit "$status"');

  return run(DIE_WITH_PARENT[0], [...DIE_WITH_PARENT.slice(1), 'unshare', '--mount', '--propagation', 'private', '--uts', '--ipc', '--', '/bin/sh', '-c', lines.join('\n')], {
    env: options.env,
    cleanEnv: true,
    stream: true,
    reject: false,
    signal: options.signal,
    // The mount shell dies at once, and the sandbox with it (its processes
    // die with their parents): a script gets no say in being stopped.
    killSignal: 'SIGKILL',
  });
}

/**
 * A read-only copy of the host's resolv.conf is bound over the image's so
 * that package managers resolve names; a script that writes to it fails
 * (`Read-only file system`), and the host's file is out of its reach. An
 * image's resolv.conf is often a symlink into /run (which is a fresh tmpfs
 * here), so the link's target is created there first.
 */
function resolvConfLines(root: string, workDir: string): string[] {
  const target = resolveInRoot(root, '/etc/resolv.conf');
  const run = resolveInRoot(root, '/run');
  if (!existsSync('/etc/resolv.conf')) return [];
  const copy = path.join(workDir, 'resolv.conf');
  copyFileSync(realpathSync('/etc/resolv.conf'), copy);
  const bind = `mount --bind -o ro,nosuid,nodev,noexec ${quote(copy)} ${quote(target)}`;
  if (target.startsWith(`${run}/`)) return [`mkdir -p ${quote(path.dirname(target))}`, `touch ${quote(target)}`, bind];
  if (existsSync(target) && statSync(target).isFile()) return [bind];
  // No resolv.conf to bind over, and creating one would change the image.
  return [];
}

/** A bind-mount source must be inside the layer folder, even after following symlinks. */
export function bindSource(layerDir: string, source: string): string {
  const candidate = path.join(layerDir, source);
  if (!existsSync(candidate)) {
    throw new Error(
      `chroot-bind-mount source '${source}' does not exist in the layer folder ${layerDir}. Create it there, or fix the path (it is relative to the layer folder).`,
    );
  }
  const real = realpathSync(candidate);
  const realLayerDir = realpathSync(layerDir);
  if (real !== realLayerDir && !real.startsWith(`${realLayerDir}/`)) {
    throw new Error(
      `chroot-bind-mount source '${source}' resolves to ${real}, outside the layer folder ${layerDir}; bind sources must stay inside it. ` +
        `Copy what the layer needs into its folder instead of linking to it.`,
    );
  }
  return real;
}

/**
 * Checks every `# chroot-bind-mount` source of a script before anything is
 * attached (they are checked again when mounted); the message names the
 * script and the hint.
 */
export function checkBindSources(layerDir: string, bindMounts: readonly BindMountHint[], script: string): void {
  for (const hint of bindMounts) {
    try {
      bindSource(layerDir, hint.source);
    } catch (error) {
      throw new Error(`${script}: # chroot-bind-mount ${hint.source} ${hint.target}: ${(error as Error).message}`);
    }
  }
}

const POLICY_RC_D = '#!/bin/sh\n# Written by vmlb for the duration of a layer build: services must not start in a chroot.\nexit 101\n';

/**
 * On Debian-family images, stop package installs from starting services
 * during the build (invoke-rc.d asks /usr/sbin/policy-rc.d; 101 = denied).
 * Returns a function that puts things back; an image's own policy-rc.d is
 * left alone, and so is one the script replaced or reached through a
 * symlink it planted (`/usr/sbin` -> a host folder): after the script, the
 * file is found again without following any link, and removed only if it
 * is still vmlb's.
 */
export function blockServiceStarts(root: string): () => void {
  if (!existsSync(resolveInRoot(root, '/etc/debian_version'))) return () => undefined;
  const sbin = resolveInRoot(root, '/usr/sbin');
  if (!existsSync(sbin)) return () => undefined;
  const policy = path.join(sbin, 'policy-rc.d');
  try {
    lstatSync(policy);
    return () => undefined;
  } catch {
    // 'wx': never through a symlink, never over a file.
    writeFileSync(policy, POLICY_RC_D, { mode: 0o755, flag: 'wx' });
    const relative = path.relative(root, policy);
    return () => {
      const found = unlinkedPathUnder(root, relative);
      if (!found?.stats.isFile() || found.stats.size !== POLICY_RC_D.length) return;
      if (readFileSync(found.hostPath, 'utf8') === POLICY_RC_D) unlinkSync(found.hostPath);
    };
  }
}
