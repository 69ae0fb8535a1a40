import { accessSync, constants, existsSync, statSync } from 'node:fs';
import * as path from 'node:path';

/** A host tool vmlb runs, and the Debian package that provides it. */
interface Tool {
  command: string;
  debianPackage: string;
  fedoraPackage: string;
}

const TOOLS = {
  'qemu-img': { command: 'qemu-img', debianPackage: 'qemu-utils', fedoraPackage: 'qemu-img' },
  'qemu-storage-daemon': { command: 'qemu-storage-daemon', debianPackage: 'qemu-system-common', fedoraPackage: 'qemu-storage-daemon' },
  'qemu-nbd': { command: 'qemu-nbd', debianPackage: 'qemu-utils', fedoraPackage: 'qemu-img' },
  losetup: { command: 'losetup', debianPackage: 'mount', fedoraPackage: 'util-linux' },
  mount: { command: 'mount', debianPackage: 'mount', fedoraPackage: 'util-linux' },
  umount: { command: 'umount', debianPackage: 'mount', fedoraPackage: 'util-linux' },
  unshare: { command: 'unshare', debianPackage: 'util-linux', fedoraPackage: 'util-linux' },
  chroot: { command: 'chroot', debianPackage: 'coreutils', fedoraPackage: 'coreutils' },
  'qemu-system-x86_64': { command: 'qemu-system-x86_64', debianPackage: 'qemu-system-x86', fedoraPackage: 'qemu-system-x86-core' },
  tar: { command: 'tar', debianPackage: 'tar', fedoraPackage: 'tar' },
  script: { command: 'script', debianPackage: 'bsdutils', fedoraPackage: 'util-linux-script' },
} satisfies Record<string, Tool>;

export type ToolName = keyof typeof TOOLS;

/** What a layer build needs on the host. */
export function layerBuildTools(nbd: boolean): ToolName[] {
  return ['qemu-img', nbd ? 'qemu-nbd' : 'qemu-storage-daemon', 'losetup', 'mount', 'umount', 'unshare', 'chroot'];
}

export function findOnPath(command: string, searchPath = process.env.PATH ?? ''): string | undefined {
  for (const dir of [...searchPath.split(':'), '/usr/sbin', '/sbin']) {
    if (!dir) continue;
    const candidate = path.join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export interface HostFacts {
  uid: number;
  hasFuse: boolean;
  hasLoopControl: boolean;
  which: (command: string) => string | undefined;
}

export function currentHost(): HostFacts {
  return {
    uid: process.getuid?.() ?? -1,
    hasFuse: isCharacterDevice('/dev/fuse'),
    hasLoopControl: existsSync('/dev/loop-control'),
    which: (command) => findOnPath(command),
  };
}

/**
 * Checks everything up front and reports all that is missing in one
 * message, with the command that installs it, instead of failing half-way
 * through a build on the first missing piece.
 */
export function checkPrerequisites(tools: ToolName[], options: { fuse: boolean; disks?: boolean }, host: HostFacts = currentHost()): void {
  // Attaching disks needs root and loop devices; converting or booting them does not.
  const disks = options.disks ?? true;
  const missing: string[] = [];
  if (disks && host.uid !== 0) missing.push('root: vmlb attaches disks, mounts filesystems and runs chroots; run it as root (e.g. sudo npx nx ...).');
  const missingTools = tools.filter((tool) => !host.which(TOOLS[tool].command));
  for (const tool of missingTools) missing.push(`${TOOLS[tool].command} (Debian/Ubuntu package ${TOOLS[tool].debianPackage})`);
  if (options.fuse && !host.hasFuse) {
    missing.push(
      '/dev/fuse (a character device): load the fuse module (modprobe fuse); in a container, pass the device in (docker run --device /dev/fuse); or pass --nbd /dev/nbd0 on a host with the nbd module.',
    );
  }
  if (disks && !host.hasLoopControl) missing.push('loop device support (/dev/loop-control): load the loop module (modprobe loop).');
  if (missing.length === 0) return;
  const debianPackages = [...new Set(missingTools.map((tool) => TOOLS[tool].debianPackage))];
  const fedoraPackages = [...new Set(missingTools.map((tool) => TOOLS[tool].fedoraPackage))];
  const install = debianPackages.length
    ? `\nInstall with: apt-get install -y ${debianPackages.join(' ')}   (Fedora: dnf install -y ${fedoraPackages.join(' ')})`
    : '';
  throw new Error(`cannot build on this host; missing:\n${missing.map((item) => `  - ${item}`).join('\n')}${install}`);
}

/** Whether a path is a character device (a regular file or a missing one is not /dev/fuse). */
function isCharacterDevice(file: string): boolean {
  try {
    return statSync(file).isCharacterDevice();
  } catch {
    return false;
  }
}
