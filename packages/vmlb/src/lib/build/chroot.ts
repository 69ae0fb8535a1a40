import { existsSync, lstatSync, mkdirSync, realpathSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { type RunResult, run } from '../util/exec';
import type { BindMountHint } from '../image/hints';
import { resolveInRoot } from '../disk/root-path';
import { shellQuote as quote } from '../util/shell-quote';

/** Mount points a chroot needs, created (as empty folders) when an image lacks them. */
const STANDARD_MOUNT_POINTS = ['/proc', '/sys', '/dev', '/tmp', '/run', '/mnt'];

/**
 * `unshare` arguments for a layer script's own mount and PID namespaces:
 * mounts made in them and processes left running end with the script, even
 * when it is killed.
 */
export const SCRIPT_NAMESPACES = ['--mount', '--propagation', 'private', '--pid', '--fork', '--kill-child', '--'] as const;

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
 * Runs a build-layer script as root inside a chroot of the image, like the
 * original qemu-chroot, with every extra mount made inside a private mount
 * namespace and the script in a PID namespace of its own
 * (`unshare --mount --pid --fork --kill-child`). When the script ends, or is
 * killed, the kernel drops those mounts and kills every process it left
 * behind; nothing of the chroot is ever visible on, or left on, the host.
 *
 * Inside: /proc (nosuid,noexec,nodev) of the new PID namespace, /sys
 * read-only, a minimal /dev (null, zero, full, random, urandom, tty, a
 * private devpts, shm), /tmp and /run as tmpfs, the host's resolv.conf over
 * the image's, the layer folder read-only at /mnt, then the hints' mounts.
 */
export async function runInChroot(options: ChrootRunOptions): Promise<RunResult> {
  const { root } = options;
  const resolve = (imagePath: string) => resolveInRoot(root, imagePath);
  // Mount points the image lacks are made for the run and taken away after
  // it, so that the layer holds what its script did and nothing else.
  const madeMountPoints = STANDARD_MOUNT_POINTS.map(resolve).filter((mountPoint) => !existsSync(mountPoint));
  for (const mountPoint of madeMountPoints) mkdirSync(mountPoint, { recursive: true });
  try {
    return await runScriptInNamespace(options, resolve);
  } finally {
    for (const mountPoint of madeMountPoints) {
      // Left alone when the script put something there (it then belongs to the image).
      try {
        rmdirSync(mountPoint);
      } catch {
        /* not empty, or already gone */
      }
    }
  }
}

async function runScriptInNamespace(options: ChrootRunOptions, resolve: (imagePath: string) => string): Promise<RunResult> {
  const { root } = options;

  const lines = ['set -eu', dropForeignBuildMounts(options.workDir)];
  const mount = (...args: string[]) => lines.push(`mount ${args.map(quote).join(' ')}`);
  mount('-t', 'proc', '-o', 'nosuid,noexec,nodev', 'proc', resolve('/proc'));
  mount('-t', 'sysfs', '-o', 'ro,nosuid,noexec,nodev', 'sysfs', resolve('/sys'));
  const dev = resolve('/dev');
  mount('-t', 'tmpfs', '-o', 'nosuid,noexec,mode=0755,size=16m', 'vmlb-dev', dev);
  for (const node of ['null', 'zero', 'full', 'random', 'urandom', 'tty']) {
    lines.push(`touch ${quote(`${dev}/${node}`)}`);
    mount('--bind', `/dev/${node}`, `${dev}/${node}`);
  }
  lines.push(`mkdir -p ${quote(`${dev}/pts`)} ${quote(`${dev}/shm`)}`);
  mount('-t', 'devpts', '-o', 'newinstance,ptmxmode=0666,mode=0620', 'devpts', `${dev}/pts`);
  mount('-t', 'tmpfs', '-o', 'nosuid,nodev', 'shm', `${dev}/shm`);
  for (const [link, target] of [
    ['ptmx', 'pts/ptmx'],
    ['fd', '/proc/self/fd'],
    ['stdin', '/proc/self/fd/0'],
    ['stdout', '/proc/self/fd/1'],
    ['stderr', '/proc/self/fd/2'],
  ]) {
    lines.push(`ln -s ${quote(target)} ${quote(`${dev}/${link}`)}`);
  }
  mount('-t', 'tmpfs', '-o', 'nosuid,nodev,mode=1777', 'tmp', resolve('/tmp'));
  mount('-t', 'tmpfs', '-o', 'nosuid,nodev,mode=0755', 'run', resolve('/run'));
  lines.push(...resolvConfLines(root));

  const mnt = resolve('/mnt');
  mount('--bind', options.layerDir, mnt);
  mount('-o', 'remount,bind,ro', mnt);
  for (const hint of options.bindMounts) {
    const source = bindSource(options.layerDir, hint.source);
    const target = resolve(hint.target);
    lines.push(statSync(source).isDirectory() ? `mkdir -p ${quote(target)}` : `mkdir -p ${quote(path.dirname(target))}; touch ${quote(target)}`);
    mount('--bind', source, target);
    mount('-o', 'remount,bind,ro', target);
  }
  for (const partition of options.partitionMounts) {
    const target = resolve(partition.target);
    lines.push(`mkdir -p ${quote(target)}`);
    // A loop mount made here is released by the kernel with the namespace.
    mount('-o', `loop,noatime,offset=${partition.offset},sizelimit=${partition.size}`, partition.device, target);
  }
  // Not exec: once the script is done, the partitions mounted here are
  // flushed so a write error on them (a full disk under dist/) fails the
  // layer instead of vanishing with this namespace.
  lines.push(`status=0; chroot ${quote(root)} /bin/sh -c ${quote(`cd /mnt && exec ./${options.scriptName}`)} || status=$?`);
  for (const partition of options.partitionMounts) {
    const target = resolve(partition.target);
    lines.push(
      `if [ "$status" -eq 0 ] && ! sync --file-system ${quote(target)}; then echo ${quote(`vmlb: writes to partition mounted at ${partition.target} failed; the disk holding the layer is probably full`)} >&2; status=75; fi`,
    );
  }
  lines.push('exit "$status"');

  return run('unshare', [...SCRIPT_NAMESPACES, '/bin/sh', '-c', lines.join('\n')], {
    env: options.env,
    cleanEnv: true,
    stream: true,
    reject: false,
    signal: options.signal,
  });
}

/**
 * The host's resolv.conf is bound over the image's so that package managers
 * resolve names. An image's resolv.conf is often a symlink into /run (which
 * is a fresh tmpfs here), so the link's target is created there first.
 */
function resolvConfLines(root: string): string[] {
  const target = resolveInRoot(root, '/etc/resolv.conf');
  const run = resolveInRoot(root, '/run');
  const hostResolvConf = existsSync('/etc/resolv.conf') ? realpathSync('/etc/resolv.conf') : undefined;
  if (!hostResolvConf) return [];
  if (target.startsWith(`${run}/`)) {
    return [`mkdir -p ${quote(path.dirname(target))}`, `touch ${quote(target)}`, `mount --bind ${quote(hostResolvConf)} ${quote(target)}`];
  }
  if (existsSync(target) && statSync(target).isFile()) return [`mount --bind ${quote(hostResolvConf)} ${quote(target)}`];
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
 * left alone.
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
    writeFileSync(policy, POLICY_RC_D, { mode: 0o755 });
    return () => rmSync(policy, { force: true });
  }
}
