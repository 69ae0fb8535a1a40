import { cpSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { type NxWorkspace, REPO_ROOT } from './nx-workspace';

/** What a user's workspace has beside its images: this repository's package.json dependencies and lockfile. */
export function adoptRepoLockfile(workspace: NxWorkspace): void {
  const repoPackage = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8'));
  const own = JSON.parse(readFileSync(workspace.path('package.json'), 'utf8'));
  writeJson(workspace.path('package.json'), { ...own, devDependencies: repoPackage.devDependencies });
  cpSync(path.join(REPO_ROOT, 'package-lock.json'), workspace.path('package-lock.json'));
}

/** `npm install -D <name>@<version>` as it shows in the files Nx reads: package.json and the lockfile. */
export function addDevDependency(workspace: NxWorkspace, name: string, version: string): void {
  const manifest = JSON.parse(readFileSync(workspace.path('package.json'), 'utf8'));
  manifest.devDependencies = { ...manifest.devDependencies, [name]: version };
  writeJson(workspace.path('package.json'), manifest);
  const lockfile = JSON.parse(readFileSync(workspace.path('package-lock.json'), 'utf8'));
  lockfile.packages[''].devDependencies = { ...lockfile.packages[''].devDependencies, [name]: version };
  lockfile.packages[`node_modules/${name}`] = {
    version,
    resolved: `https://registry.npmjs.org/${name}/-/${name}-${version}.tgz`,
    integrity: `sha512-${Buffer.alloc(64, name).toString('base64')}`,
    dev: true,
  };
  writeJson(workspace.path('package-lock.json'), lockfile);
}

/**
 * Gives the workspace a node_modules of its own in which vmlb is an
 * installed copy, not this repository's package: another release
 * (`version`), or one that writes another layer format (`layerFormat`).
 * Every other package links to this repository's node_modules.
 */
export function installVmlbCopy(workspace: NxWorkspace, change: { version?: string; layerFormat?: number }): void {
  const modules = workspace.path('node_modules');
  // The usual node_modules is a link to this repository's: remove the link, never what it points to.
  if (lstatSync(modules).isSymbolicLink()) unlinkSync(modules);
  else rmSync(modules, { recursive: true, force: true });
  mkdirSync(modules);
  for (const entry of readdirSync(path.join(REPO_ROOT, 'node_modules'))) {
    if (entry !== 'vmlb') symlinkSync(path.join(REPO_ROOT, 'node_modules', entry), path.join(modules, entry));
  }
  const source = path.join(REPO_ROOT, 'packages/vmlb');
  const copy = path.join(modules, 'vmlb');
  mkdirSync(copy);
  for (const entry of ['dist', 'src', 'executors.json', 'generators.json', 'package.json'])
    cpSync(path.join(source, entry), path.join(copy, entry), { recursive: true });
  symlinkSync(path.join(source, 'node_modules'), path.join(copy, 'node_modules'));
  if (change.version) {
    const manifest = JSON.parse(readFileSync(path.join(copy, 'package.json'), 'utf8'));
    writeJson(path.join(copy, 'package.json'), { ...manifest, version: change.version });
  }
  if (change.layerFormat !== undefined) {
    const taskKey = path.join(copy, 'dist/lib/cache-identity/task-key.js');
    const code = readFileSync(taskKey, 'utf8');
    const changed = code.replace(/exports\.LAYER_FORMAT = \d+;/, `exports.LAYER_FORMAT = ${change.layerFormat};`);
    if (changed === code) throw new Error(`${taskKey} has no 'exports.LAYER_FORMAT = <n>;' to change: where does the layer format live now?`);
    writeFileSync(taskKey, changed);
  }
}

function writeJson(file: string, value: unknown): void {
  writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
}
