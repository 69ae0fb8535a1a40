import type { PackageChanges } from './dpkg-status';

/**
 * The packages an image ends with, each attributed to the layer that last
 * installed or upgraded it, from what every layer of its chain recorded:
 * its manifest's package changes and, for a build-layer, the full package
 * list its root listing ends with (`<layer>.snapshot.json.gz`).
 *
 * The full list is what makes the result exact: a modify-disk layer (the
 * debootstrap of images/prod) or a base disk records no package changes,
 * yet the packages it brought are in the next build-layer's list. Those are
 * attributed to the layer below that has no package record, the nearest
 * one that could have brought them.
 */

/** What one file of the chain recorded, base first. */
export interface LayerPackageRecord {
  image: string;
  /** `base`, or the layer folder. */
  layer: string;
  kind: 'base' | 'build-layer' | 'modify-disk';
  /** The manifest's package changes; undefined when the layer saw no package database, or has no file list (base, modify-disk). */
  changes?: PackageChanges;
  /** Whether the manifest has a file list (a build-layer that ran in the image's root). */
  ranInRoot: boolean;
  /** The full package list after the layer (build-layer listings), when stored. */
  after?: Array<{ key: string; version: string; architecture: string }>;
}

export interface ImagePackage {
  name: string;
  version: string;
  /** dpkg's architecture (`amd64`, `all`); empty when no record of the chain says it. */
  architecture: string;
  /** The layer that last installed or upgraded it. */
  image: string;
  layer: string;
  /** installed or upgraded by that layer's script; present: found after a layer with no package record (base, modify-disk). */
  how: 'installed' | 'upgraded' | 'present';
}

export interface ImagePackages {
  packages: ImagePackage[];
  /** What the records cannot tell, for the document's comment. */
  limits: string[];
}

/** dpkg keys are `name`, or `name:arch` for a name installed for several architectures. */
function nameOf(key: string): string {
  return key.split(':', 1)[0];
}

/** The final package set of a chain and who brought each package, walking the records base first. */
export function imagePackages(records: readonly LayerPackageRecord[]): ImagePackages {
  let state = new Map<string, ImagePackage>();
  const limits: string[] = [];
  let unrecorded: LayerPackageRecord | undefined;
  for (const record of records) {
    if (!record.ranInRoot) {
      // A base or a modify-disk layer: it may have changed packages, and says nothing of it.
      unrecorded = record;
      continue;
    }
    if (record.after) {
      state = fromFullList(record, state, unrecorded);
    } else if (record.changes) {
      if (unrecorded) {
        limits.push(
          `packages brought by ${describe(unrecorded)} and not changed by ${describe(record)} are missing: ${describe(record)} has no stored package list (a # noshare layer restored from this machine's store keeps none)`,
        );
      }
      state = applyChanges(record, state);
    } else {
      // A build-layer that found no package database before or after its script.
      state = new Map();
    }
    unrecorded = undefined;
  }
  if (unrecorded && records.some((record) => record.changes)) {
    limits.push(`packages changed by ${describe(unrecorded)} (no package record: a base or modify-disk layer at the top of the chain) are not reflected`);
  }
  const packages = [...state.values()].sort((a, b) => compare(a.name, b.name) || compare(a.architecture, b.architecture));
  if (packages.some((pkg) => !pkg.architecture)) limits.push('some packages have no recorded architecture (their layer has no stored package list)');
  return { packages, limits };
}

// The full list after a build-layer, each package attributed by the changes that brought it, else as before, else to the unrecorded layer below.
function fromFullList(record: LayerPackageRecord, before: Map<string, ImagePackage>, unrecorded: LayerPackageRecord | undefined): Map<string, ImagePackage> {
  // A change names `name`, or `name:arch` when several architectures are installed: match the architecture only then.
  const by = (entries: Array<{ name: string; version: string }>) => (name: string, architecture: string, version: string) =>
    entries.some((entry) => entry.version === version && (entry.name === name || entry.name === `${name}:${architecture}`));
  const installed = by(record.changes?.installed ?? []);
  const upgraded = by((record.changes?.upgraded ?? []).map((entry) => ({ name: entry.name, version: entry.to })));
  const state = new Map<string, ImagePackage>();
  for (const { key, version, architecture } of record.after!) {
    const name = nameOf(key);
    const id = `${name}:${architecture}`;
    const previous = before.get(id) ?? before.get(`${name}:`);
    const changedHere = installed(name, architecture, version) ? 'installed' : upgraded(name, architecture, version) ? 'upgraded' : undefined;
    if (changedHere) state.set(id, { name, version, architecture, image: record.image, layer: record.layer, how: changedHere });
    else if (previous && previous.version === version) state.set(id, { ...previous, architecture });
    else {
      const source = unrecorded ?? record;
      state.set(id, { name, version, architecture, image: source.image, layer: source.layer, how: 'present' });
    }
  }
  return state;
}

// The manifest's changes applied to the set below; the architecture is kept from before, or from a `name:arch` key.
function applyChanges(record: LayerPackageRecord, before: Map<string, ImagePackage>): Map<string, ImagePackage> {
  const state = new Map(before);
  const find = (key: string) => [...state.keys()].filter((id) => id.startsWith(`${nameOf(key)}:`) && (!key.includes(':') || id === key));
  const changes = record.changes!;
  for (const { name: key } of changes.removed) for (const id of find(key)) state.delete(id);
  for (const { name: key, to } of changes.upgraded) {
    for (const id of find(key)) state.set(id, { ...state.get(id)!, version: to, image: record.image, layer: record.layer, how: 'upgraded' });
  }
  for (const { name: key, version } of changes.installed) {
    const architecture = key.includes(':') ? key.slice(key.indexOf(':') + 1) : '';
    state.set(`${nameOf(key)}:${architecture}`, { name: nameOf(key), version, architecture, image: record.image, layer: record.layer, how: 'installed' });
  }
  return state;
}

function describe(record: LayerPackageRecord): string {
  return record.layer === 'base' ? `the base of image ${record.image}` : `layer ${record.layer} of image ${record.image}`;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
