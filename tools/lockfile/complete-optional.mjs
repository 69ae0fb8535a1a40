#!/usr/bin/env node
// Gives package-lock.json an entry for every optional dependency that a
// locked package declares, the native packages of other platforms included.
//
//   node tools/lockfile/complete-optional.mjs [--check] [path/to/package-lock.json]
//
// `npm ci` refuses a lockfile that lacks any of them ("Missing: ... from lock
// file"), even the ones it would skip on this machine; `npm install` on a
// registry that does not serve them (a mirror of one platform) leaves them out.
// Without --check it adds each missing entry at node_modules/<name>, with the
// version the parent asks for and the flags npm would give it, and the
// version's os, cpu, libc, integrity and other lockfile fields from the
// registry (`npm view`); no `resolved`, like the rest of this lockfile (npm
// derives the tarball URL from the registry). When the registry has the
// package but not that version, the entry gets only os, cpu and libc, read
// from the version the registry tags latest: enough for npm to skip it on
// other platforms without asking the registry, which is all a lockfile can
// say about a package this registry cannot install anyway.
// Running it again changes nothing. With --check it writes nothing, names
// each missing entry and exits 1 if there is one (CI runs it before the tests).
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const defaultLockfile = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../package-lock.json');

// The lockfile fields npm takes from a package's manifest (arborist's pkgMetaKeys).
const manifestFields = [
  'dependencies',
  'peerDependencies',
  'peerDependenciesMeta',
  'optionalDependencies',
  'bundleDependencies',
  'funding',
  'engines',
  'os',
  'cpu',
  'libc',
  'license',
  'bin',
  'deprecated',
];

// The location npm resolves `name` to from the package at `from`: the nearest node_modules/<name> up the tree, or null.
export function resolveLocation(packages, from, name) {
  let dir = from;
  for (;;) {
    const location = `${dir ? `${dir}/` : ''}node_modules/${name}`;
    if (packages[location]) return location;
    if (!dir) return null;
    const up = dir.lastIndexOf('node_modules/');
    dir = up <= 0 ? '' : dir.slice(0, up - 1);
  }
}

// Every optional dependency no entry satisfies: { name, spec, parents, found } (found: where an entry of another version sits, when the spec is exact).
export function findMissing(lock) {
  const packages = lock.packages ?? {};
  const missing = new Map();
  for (const [location, entry] of Object.entries(packages)) {
    if (entry.link) continue;
    for (const [name, spec] of Object.entries(entry.optionalDependencies ?? {})) {
      const found = resolveLocation(packages, location, name);
      if (found && !(isExactVersion(spec) && packages[found].version !== spec)) continue;
      const key = `${name}@${spec}`;
      if (!missing.has(key)) missing.set(key, { name, spec, parents: [], found: found && `${found}@${packages[found].version}` });
      missing.get(key).parents.push(location);
    }
  }
  return [...missing.values()];
}

// Whether a dependency spec names one version (1.2.3, 1.2.3-rc.1) rather than a range or a tag.
function isExactVersion(spec) {
  return /^v?\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$/.test(spec.trim());
}

// One line for --check and for errors: what is missing, and who asks for it.
export function describe({ name, spec, parents, found }) {
  const who = parents.map((parent) => parent || 'the root package').join(', ');
  return `${name}@${spec}, an optional dependency of ${who}${found ? ` (${found} does not match)` : ''}`;
}

// `npm view <spec> --json`: the parsed answer, or null when the registry has no such package or version (E404).
function npmView(spec, npm) {
  const result = spawnSync(npm, ['view', spec, '--json'], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  if (result.error) throw new Error(`could not run ${npm} view ${spec}: ${result.error.message}`);
  let answer;
  try {
    answer = JSON.parse(result.stdout || 'null');
  } catch {
    throw new Error(`${npm} view ${spec} --json printed something that is not JSON:\n${result.stdout}${result.stderr}`);
  }
  if (answer && answer.error) {
    if (answer.error.code === 'E404') return null;
    throw new Error(`${npm} view ${spec}: ${answer.error.summary ?? answer.error.code}`);
  }
  if (result.status !== 0) throw new Error(`${npm} view ${spec} exited with ${result.status}:\n${result.stderr}`);
  return answer;
}

// The entry npm would write for a package whose manifest is `manifest` (arborist's Shrinkwrap.metaFromNode, registry packages).
function entryFromManifest(manifest) {
  const entry = { version: manifest.version };
  for (const field of manifestFields) {
    let value = manifest[field];
    if (field === 'license' && value && typeof value === 'object') value = value.type;
    if (field === 'bin') value = normalizeBin(manifest.name, value);
    if (!value || (typeof value === 'object' && !Object.keys(value).length)) continue;
    entry[field] = value;
  }
  if (manifest.dist?.integrity) entry.integrity = manifest.dist.integrity;
  const scripts = manifest.scripts ?? {};
  if (manifest.hasInstallScript || scripts.preinstall || scripts.install || scripts.postinstall || manifest.gypfile) entry.hasInstallScript = true;
  return entry;
}

// A manifest's bin as npm saves it: an object of command name to path, without a leading ./.
function normalizeBin(name, bin) {
  if (!bin) return undefined;
  const commands = typeof bin === 'string' ? { [name.replace(/^@[^/]+\//, '')]: bin } : bin;
  return Object.fromEntries(Object.entries(commands).map(([command, file]) => [command, String(file).replace(/^(\.\/)+/, '')]));
}

// The lockfile entry for a missing dependency, from the registry; throws when it has neither the version nor the package (or no os/cpu for it).
export function entryFor({ name, spec }, npm = 'npm') {
  const answer = npmView(`${name}@${spec}`, npm);
  // A range matching several versions comes back as a list, oldest first: npm would take the newest.
  const manifest = Array.isArray(answer) ? answer[answer.length - 1] : answer;
  if (manifest) return { entry: entryFromManifest(manifest), note: '' };
  if (!isExactVersion(spec)) throw new Error(`the registry has no version of ${name} matching ${spec}`);
  const latest = npmView(name, npm);
  if (!latest) throw new Error(`the registry has no package ${name}, so its platform (os, cpu, libc) is unknown; add its entry by hand`);
  const entry = { version: spec.trim().replace(/^v/, '') };
  for (const field of ['os', 'cpu', 'libc']) if (latest[field]?.length) entry[field] = latest[field];
  if (!entry.os && !entry.cpu)
    throw new Error(
      `${name}@${latest.version} declares no os or cpu, so it is not a platform package this script may describe without the registry; add its entry by hand`,
    );
  return { entry, note: ` (the registry has no ${spec}: os/cpu/libc from ${latest.version}, no integrity)` };
}

// The flags npm gives a package reached only through optional edges from `parents`: optional, and dev or peer when every parent is.
function flagsFrom(packages, parents) {
  const every = (flag) => parents.every((parent) => packages[parent]?.[flag] === true);
  return { ...(every('dev') ? { dev: true } : {}), ...(every('peer') ? { peer: true } : {}), optional: true };
}

// Adds an entry for each missing optional dependency (following the optional dependencies of the entries it adds); returns [added lines, problems].
export function complete(lock, npm = 'npm') {
  const added = [];
  const problems = [];
  const failed = new Set();
  for (;;) {
    const todo = findMissing(lock).filter((missing) => !failed.has(`${missing.name}@${missing.spec}`));
    if (!todo.length) break;
    for (const missing of todo) {
      if (missing.found) {
        failed.add(`${missing.name}@${missing.spec}`);
        problems.push(`${describe(missing)}: the locked version is another one; run npm install to nest the right one`);
        continue;
      }
      try {
        const { entry, note } = entryFor(missing, npm);
        lock.packages[`node_modules/${missing.name}`] = { ...entry, ...flagsFrom(lock.packages, missing.parents) };
        added.push(`${missing.name}@${entry.version}${note}`);
      } catch (error) {
        failed.add(`${missing.name}@${missing.spec}`);
        problems.push(`${describe(missing)}: ${error.message}`);
      }
    }
  }
  return [added, problems];
}

// JSON as npm writes package-lock.json (json-stringify-nice with arborist's key order): scalars and arrays before objects, each group sorted, npm's preferred keys first.
export function stringifyLockfile(lock) {
  const preferred = ['name', 'version', 'lockfileVersion', 'resolved', 'integrity', 'requires', 'packages', 'dependencies'];
  const isObject = (value) => !!value && typeof value === 'object' && !Array.isArray(value);
  const compare = (a, b) => {
    const ia = preferred.indexOf(a);
    const ib = preferred.indexOf(b);
    if (ia >= 0 || ib >= 0) return ia < 0 ? 1 : ib < 0 ? -1 : ia - ib;
    return a.localeCompare(b, 'en');
  };
  const sorted = (_key, value) =>
    isObject(value)
      ? Object.fromEntries(Object.entries(value).sort(([a, va], [b, vb]) => (isObject(va) === isObject(vb) ? compare(a, b) : isObject(va) ? 1 : -1)))
      : value;
  return `${JSON.stringify(lock, sorted, 2)}\n`;
}

// The command line: exit 0 when complete (or completed), 1 when something is or stays missing, 2 on a usage error.
function main(argv) {
  const check = argv.includes('--check');
  const rest = argv.filter((arg) => arg !== '--check');
  if (rest.some((arg) => arg.startsWith('-')) || rest.length > 1) {
    console.error('Usage: node tools/lockfile/complete-optional.mjs [--check] [package-lock.json]');
    return 2;
  }
  const file = rest[0] ?? defaultLockfile;
  const lock = JSON.parse(readFileSync(file, 'utf8'));
  const shown = path.relative(process.cwd(), file) || file;

  if (check) {
    const missing = findMissing(lock);
    for (const entry of missing) console.error(`${shown} misses ${describe(entry)}`);
    if (missing.length) {
      console.error(`npm ci fails on a lockfile without these. Add them: node tools/lockfile/complete-optional.mjs${rest[0] ? ` ${rest[0]}` : ''}`);
      return 1;
    }
    console.log(`${shown}: every optional dependency has an entry.`);
    return 0;
  }

  const [added, problems] = complete(lock);
  if (added.length) writeFileSync(file, stringifyLockfile(lock));
  for (const line of added) console.log(`added ${line}`);
  for (const problem of problems) console.error(`${shown} still misses ${problem}`);
  if (!added.length && !problems.length) console.log(`${shown}: every optional dependency has an entry; nothing to add.`);
  return problems.length ? 1 : 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (error) {
    console.error(`tools/lockfile/complete-optional.mjs: ${error.message}`);
    process.exitCode = 1;
  }
}
