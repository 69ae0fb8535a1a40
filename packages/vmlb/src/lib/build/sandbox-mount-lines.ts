import { copyFileSync, existsSync, realpathSync, statSync } from 'node:fs';
import * as path from 'node:path';
import type { DiskDevices } from '../disk/disk-devices';
import { resolveInRoot } from '../disk/root-path';
import { shellQuote as quote } from '../util/shell-quote';

/** Lines of the sandbox's mount shell that put files into its /dev, /run and /etc: what a build-layer's hints and the host lend it. */

/**
 * `# secret`: each value, one base64 line of the mount shell's stdin, decoded
 * into the freshly mounted /run tmpfs (so into memory, never the image, and
 * never through a symlink: the tmpfs holds only what is made here), mode
 * 0400. `read` takes one byte at a time from a pipe, so each line leaves
 * the next for the next secret.
 */
export function secretLines(secrets: Array<{ target: string }>, runDir: string): string[] {
  return secrets.flatMap((secret) => {
    const file = path.join(runDir, path.posix.relative('/run', secret.target));
    return [`mkdir -p ${quote(path.dirname(file))}`, `IFS= read -r value; (umask 0377; printf '%s' "$value" | base64 -d > ${quote(file)}); value=`];
  });
}

/**
 * A read-only copy of the host's resolv.conf is bound over the image's so
 * that package managers resolve names; a script that writes to it fails
 * (`Read-only file system`), and the host's file is out of its reach. An
 * image's resolv.conf is often a symlink into /run (which is a fresh tmpfs
 * here), so the link's target is created there first.
 */
export function resolvConfLines(root: string, workDir: string): string[] {
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

/** `# disk-devices`: the devices under their own names (grub-probe looks them up so), /dev/vmlb-disk, /dev/vmlb-disk<N> naming them, and udev's /dev/disk links. */
export function diskDeviceLines(devices: DiskDevices | undefined, dev: string): string[] {
  if (!devices) return [];
  const nodes = [{ alias: 'vmlb-disk', device: devices.disk }, ...[...devices.partitions].map(([number, device]) => ({ alias: `vmlb-disk${number}`, device }))];
  return [
    ...nodes.flatMap(({ alias, device }) => [
      `cp -a ${quote(device)} ${quote(`${dev}/`)}`,
      `ln -s ${quote(path.basename(device))} ${quote(`${dev}/${alias}`)}`,
    ]),
    ...devices.links.flatMap(({ link, device }) => [
      `mkdir -p ${quote(path.dirname(`${dev}/${link}`))}`,
      `ln -sf ${quote(`../../${device}`)} ${quote(`${dev}/${link}`)}`,
    ]),
  ];
}
