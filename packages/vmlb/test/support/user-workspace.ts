import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { execa } from 'execa';
import { REPO_ROOT, nxEnvironment, type NxRun } from './nx-workspace';

/** One package of this repository as `npm pack` wrote it. */
export interface PackedPackage {
  tarball: string;
  /** Every path in the tarball, relative to the package root, sorted. */
  files: string[];
}

/**
 * The environment of npm and nx in a user's workspace: nx as the specs run
 * it, without the `npm_*` variables an outer `npm test` sets (npm reads them
 * as its own configuration: they would point into this repository), but
 * with this machine's npm cache, so that installing from the registry is
 * quick.
 */
function userEnvironment(npmCache: string): Record<string, string | undefined> {
  const inherited = Object.keys(process.env).filter((name) => /^npm_/i.test(name) || name === 'INIT_CWD');
  return { ...Object.fromEntries(inherited.map((name) => [name, undefined])), ...nxEnvironment(), npm_config_cache: npmCache };
}

/** The npm cache this repository's installs use (`npm config get cache`), for the scratch workspaces to share. */
export async function repositoryNpmCache(): Promise<string> {
  const { stdout } = await execa('npm', ['config', 'get', 'cache'], { cwd: REPO_ROOT });
  return stdout.trim();
}

/** Packs this repository's workspace packages (`npm pack --workspace <name>`) into `destination`, as they would be published. */
export async function packRepositoryPackages(destination: string, names: string[]): Promise<Record<string, PackedPackage>> {
  const args = ['pack', '--json', '--pack-destination', destination, ...names.flatMap((name) => ['--workspace', name])];
  const { stdout } = await execa('npm', args, { cwd: REPO_ROOT, env: userEnvironment(await repositoryNpmCache()) });
  const packed = JSON.parse(stdout) as Array<{ name: string; filename: string; files: Array<{ path: string }> }>;
  return Object.fromEntries(
    packed.map((entry) => [entry.name, { tarball: path.join(destination, entry.filename), files: entry.files.map((file) => file.path).sort() }]),
  );
}

/**
 * A workspace of someone who uses vmlb: in a folder of its own under the
 * system temp folder (never inside this repository, so that nothing
 * resolves from this repository's node_modules), with its own package.json,
 * nx.json and node_modules installed by npm from the registry.
 */
export class UserWorkspace {
  readonly root: string;

  private constructor(
    root: string,
    private readonly npmCache: string,
  ) {
    this.root = root;
  }

  /** Writes `files` (workspace-relative path to content) into a new temp folder. */
  static async create(files: Record<string, string>): Promise<UserWorkspace> {
    const workspace = new UserWorkspace(mkdtempSync(path.join(tmpdir(), 'vmlb-user-ws-')), await repositoryNpmCache());
    for (const [file, content] of Object.entries(files)) workspace.write(file, content);
    return workspace;
  }

  path(...parts: string[]): string {
    return path.join(this.root, ...parts);
  }

  write(file: string, content: string, mode?: number): void {
    mkdirSync(path.dirname(this.path(file)), { recursive: true });
    writeFileSync(this.path(file), content, mode === undefined ? undefined : { mode });
  }

  read(file: string): string {
    return readFileSync(this.path(file), 'utf8');
  }

  readJson<T = Record<string, unknown>>(file: string): T {
    return JSON.parse(this.read(file)) as T;
  }

  /** Runs a command in the workspace; never throws on a non-zero exit. */
  async run(command: string, args: string[], timeoutMs = 300_000): Promise<NxRun> {
    const result = await execa(command, args, { cwd: this.root, all: true, reject: false, timeout: timeoutMs, env: userEnvironment(this.npmCache) });
    return { exitCode: result.exitCode ?? -1, output: String(result.all ?? '') };
  }

  /** Runs a command and fails with its whole output when it does not succeed. */
  async runOk(command: string, args: string[], timeoutMs?: number): Promise<string> {
    const run = await this.run(command, args, timeoutMs);
    if (run.exitCode !== 0) throw new Error(`${command} ${args.join(' ')} in ${this.root} exited with ${run.exitCode}:\n${run.output}`);
    return run.output;
  }

  /** `npm install` from the registry, reusing what this machine's npm cache holds. */
  async npmInstall(...args: string[]): Promise<string> {
    return this.runOk('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', ...args]);
  }

  /** `npx nx <args>`: the workspace's own nx, as its users run it. */
  async nx(args: string[]): Promise<string> {
    return this.runOk('npx', ['nx', ...args]);
  }

  /** Makes the workspace a git repository with everything committed, as a user's workspace is. */
  async commitAll(message: string): Promise<void> {
    const git = ['-c', 'user.name=vmlb test', '-c', 'user.email=test@vmlb.invalid'];
    if ((await this.run('git', ['rev-parse', '--git-dir'])).exitCode !== 0) await this.runOk('git', ['init', '-q']);
    await this.runOk('git', ['add', '-A']);
    await this.runOk('git', [...git, 'commit', '-qm', message]);
  }

  /** `git status --porcelain`: one line per changed or new file since the last commit. */
  async changedFiles(): Promise<string[]> {
    return (await this.runOk('git', ['status', '--porcelain', '--untracked-files=all'])).split('\n').filter(Boolean).sort();
  }

  remove(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}
