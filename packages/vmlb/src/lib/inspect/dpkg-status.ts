import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { resolveInRoot } from '../disk/root-path';
import { isVanished } from './file-entries';

/**
 * The packages an image has installed, from its dpkg status file
 * (/var/lib/dpkg/status), and what changed in them between two snapshots.
 */

export const DPKG_STATUS = '/var/lib/dpkg/status';

/** The package fields of a root snapshot (none when the image has no dpkg database). */
export interface InstalledPackages {
  /** `name` (or `name:arch` when several architectures of it are installed) -> version, from dpkg. */
  packages?: Map<string, string>;
  packageManager?: 'dpkg';
  /** Architecture of each key of `packages`, so a diff can tell `libc6` from `libc6:amd64`. */
  packageArchitectures?: Map<string, string>;
}

export interface PackageVersion {
  name: string;
  version: string;
}

export interface PackageChange {
  name: string;
  from: string;
  to: string;
}

/** What a layer changed in the installed packages, as its manifest lists it. */
export interface PackageChanges {
  manager: 'dpkg';
  installed: PackageVersion[];
  removed: PackageVersion[];
  /** Version changes either way: `from` and `to` tell an upgrade from a downgrade. */
  upgraded: PackageChange[];
}

export interface DpkgPackage {
  name: string;
  architecture: string;
  version: string;
}

/** The package fields of a snapshot, read from the root's dpkg database (none when it has none). */
export async function readPackages(root: string): Promise<InstalledPackages> {
  const dpkg = await readDpkgStatus(path.resolve(root));
  return dpkg ? { packageManager: 'dpkg', packages: dpkg.versions, packageArchitectures: dpkg.architectures } : {};
}

/**
 * The installed packages from the image's dpkg status file, or undefined
 * when the image has none. The file is located as the image would see it,
 * so a symlinked /var cannot make us read the host's.
 */
async function readDpkgStatus(rootPath: string): Promise<{ versions: Map<string, string>; architectures: Map<string, string> } | undefined> {
  const statusPath = resolveInRoot(rootPath, DPKG_STATUS);
  let text: string;
  try {
    text = await readFile(statusPath, 'utf8');
  } catch (error) {
    if (isVanished(error)) return undefined;
    throw new Error(`Cannot read the dpkg database ${statusPath}: ${(error as Error).message}`, { cause: error });
  }
  const installed = parseDpkgStatus(text, statusPath);
  const versions = new Map<string, string>();
  const architectures = new Map<string, string>();
  for (const [key, pkg] of keyPackages(installed, new Set())) {
    versions.set(key, pkg.version);
    architectures.set(key, pkg.architecture);
  }
  return { versions, architectures };
}

/**
 * Installed packages of a dpkg status file. "Installed" is the third word of
 * Status: `install ok installed`, and also `hold ok installed` (a held
 * package is still there); `deinstall ok config-files` and the like are not.
 */
export function parseDpkgStatus(text: string, statusPath: string): DpkgPackage[] {
  const installed: DpkgPackage[] = [];
  for (const stanza of dpkgStanzas(text)) {
    const { fields, line } = stanza;
    if (fields.size === 0) continue;
    const name = fields.get('package');
    if (!name) throw new Error(`${statusPath}:${line}: stanza has no Package field.`);
    if ((fields.get('status') ?? '').split(/\s+/)[2] !== 'installed') continue;
    const version = fields.get('version');
    if (!version) throw new Error(`${statusPath}:${line}: installed package ${name} has no Version field.`);
    installed.push({ name, architecture: fields.get('architecture') ?? '', version });
  }
  return installed;
}

/** Stanzas' single-line fields (names lower-cased), with the line each stanza starts on. */
function* dpkgStanzas(text: string): Generator<{ fields: Map<string, string>; line: number }> {
  let fields = new Map<string, string>();
  let start = 1;
  const lines = text.split('\n');
  for (let index = 0; index < lines.length; index++) {
    const line = lines[index];
    if (line.trim() === '') {
      if (fields.size) yield { fields, line: start };
      fields = new Map();
      start = index + 2;
      continue;
    }
    if (line.startsWith(' ') || line.startsWith('\t')) continue; // continuation of a multi-line field
    const colon = line.indexOf(':');
    if (colon > 0) fields.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
  }
  if (fields.size) yield { fields, line: start };
}

/**
 * Keys packages by name, adding `:arch` only for names installed for
 * several architectures here or in `alsoQualified` (names multi-arch in the
 * other snapshot of a diff, so both sides use the same keys).
 */
function keyPackages(packages: DpkgPackage[], alsoQualified: ReadonlySet<string>): Map<string, DpkgPackage> {
  const qualified = new Set([...multiArchNames(packages), ...alsoQualified]);
  const keyed = new Map<string, DpkgPackage>();
  for (const pkg of packages) {
    keyed.set(qualified.has(pkg.name) && pkg.architecture ? `${pkg.name}:${pkg.architecture}` : pkg.name, pkg);
  }
  return keyed;
}

function multiArchNames(packages: DpkgPackage[]): Set<string> {
  const seen = new Set<string>();
  const repeated = new Set<string>();
  for (const { name } of packages) (seen.has(name) ? repeated : seen).add(name);
  return repeated;
}

/** A snapshot's packages back as a list (Debian package names never contain ':'). */
function packagesOf(snapshot: InstalledPackages): DpkgPackage[] {
  return [...(snapshot.packages ?? [])].map(([key, version]) => {
    const [name, keyArchitecture] = key.split(':', 2);
    return { name, architecture: snapshot.packageArchitectures?.get(key) ?? keyArchitecture ?? '', version };
  });
}

/** The packages installed, removed and upgraded from `before` to `after`, each list sorted by name. */
export function diffPackages(before: InstalledPackages, after: InstalledPackages): PackageChanges {
  const beforeList = packagesOf(before);
  const afterList = packagesOf(after);
  const beforeByKey = keyPackages(beforeList, multiArchNames(afterList));
  const afterByKey = keyPackages(afterList, multiArchNames(beforeList));
  const installed: PackageVersion[] = [];
  const removed: PackageVersion[] = [];
  const upgraded: PackageChange[] = [];
  for (const [name, pkg] of afterByKey) {
    const previous = beforeByKey.get(name);
    if (!previous) installed.push({ name, version: pkg.version });
    else if (previous.version !== pkg.version) upgraded.push({ name, from: previous.version, to: pkg.version });
  }
  for (const [name, pkg] of beforeByKey) {
    if (!afterByKey.has(name)) removed.push({ name, version: pkg.version });
  }
  const byName = (a: { name: string }, b: { name: string }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  return { manager: 'dpkg', installed: installed.sort(byName), removed: removed.sort(byName), upgraded: upgraded.sort(byName) };
}
