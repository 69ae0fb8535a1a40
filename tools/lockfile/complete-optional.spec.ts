import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

const script = path.join(__dirname, 'complete-optional.mjs');

// A lockfile as npm writes it: nx-like `bin` declares three platform packages (and `optional`), one of them missing.
const lockfile = (extra: Record<string, object> = {}, optional: Record<string, string> = {}) => ({
  name: 'example',
  version: '0.0.0',
  lockfileVersion: 3,
  requires: true,
  packages: {
    '': { name: 'example', version: '0.0.0', devDependencies: { bin: '1.0.0' } },
    'node_modules/bin': {
      version: '1.0.0',
      dev: true,
      license: 'MIT',
      optionalDependencies: { '@bin/linux-x64': '1.0.0', '@bin/darwin-arm64': '1.0.0', '@bin/win32-x64': '1.0.0', ...optional },
    },
    'node_modules/@bin/linux-x64': { version: '1.0.0', cpu: ['x64'], dev: true, optional: true, os: ['linux'] },
    'node_modules/@bin/win32-x64': { version: '1.0.0', cpu: ['x64'], dev: true, optional: true, os: ['win32'] },
    ...extra,
  },
});

// What the stand-in `npm view <spec> --json` answers; a spec it does not know is a 404.
const registry: Record<string, object> = {
  '@bin/darwin-arm64@1.0.0': {
    name: '@bin/darwin-arm64',
    version: '1.0.0',
    os: ['darwin'],
    cpu: ['arm64'],
    license: 'MIT',
    engines: { node: '>=18' },
    dist: { integrity: 'sha512-darwin', tarball: 'https://registry.example/@bin/darwin-arm64/-/darwin-arm64-1.0.0.tgz' },
  },
  // The registry serves only a later version of this one (`npm view <name>` answers with the latest).
  '@bin/freebsd-x64': { name: '@bin/freebsd-x64', version: '1.0.7', os: ['freebsd'], cpu: ['x64'], license: 'MIT' },
};

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'complete-optional-'));
  const fakeNpm = path.join(dir, 'npm');
  writeFileSync(
    fakeNpm,
    `#!${process.execPath}\n` +
      `const registry = ${JSON.stringify(registry)};\n` +
      `const [command, spec] = process.argv.slice(2);\n` +
      `if (command !== 'view') process.exit(2);\n` +
      `if (registry[spec]) console.log(JSON.stringify(registry[spec]));\n` +
      `else { console.log(JSON.stringify({ error: { code: 'E404', summary: 'Not Found' } })); process.exit(1); }\n`,
  );
  chmodSync(fakeNpm, 0o755);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const run = (lock: object, ...args: string[]) => {
  const file = path.join(dir, 'package-lock.json');
  writeFileSync(file, `${JSON.stringify(lock, null, 2)}\n`);
  const result = spawnSync(process.execPath, [script, ...args, file], {
    encoding: 'utf8',
    env: { ...process.env, PATH: `${dir}${path.delimiter}${process.env.PATH}` },
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr, file };
};

describe('complete-optional --check', () => {
  it('fails naming the optional dependency that has no entry, and who declares it', () => {
    const { status, stderr } = run(lockfile(), '--check');
    expect(status).toBe(1);
    expect(stderr).toContain('misses @bin/darwin-arm64@1.0.0, an optional dependency of node_modules/bin');
    expect(stderr).not.toContain('linux-x64');
    expect(stderr).toContain('node tools/lockfile/complete-optional.mjs');
  });

  it('passes a lockfile with an entry for every optional dependency, wherever npm would find it', () => {
    const complete = lockfile({
      'node_modules/@bin/darwin-arm64': { version: '1.0.0', cpu: ['arm64'], dev: true, optional: true, os: ['darwin'] },
      // A nested package resolves up the tree: its own node_modules first, then its parents', then the root's.
      'node_modules/other': { version: '2.0.0', dev: true, dependencies: { inner: '1.0.0' } },
      'node_modules/other/node_modules/inner': {
        version: '1.0.0',
        dev: true,
        optionalDependencies: { '@bin/win32-x64': '1.0.0', helper: '^3.0.0', own: '1.0.0' },
      },
      'node_modules/other/node_modules/inner/node_modules/own': { version: '1.0.0', dev: true, optional: true },
      'node_modules/other/node_modules/helper': { version: '3.1.0', dev: true, optional: true },
    });
    const { status, stdout, stderr } = run(complete, '--check');
    expect(stderr).toBe('');
    expect(status).toBe(0);
    expect(stdout).toContain('every optional dependency has an entry');
  });

  it('names an exact optional dependency that only another version satisfies', () => {
    const lock = lockfile({ 'node_modules/@bin/darwin-arm64': { version: '0.9.0', optional: true, dev: true } });
    const { status, stderr } = run(lock, '--check');
    expect(status).toBe(1);
    expect(stderr).toContain('@bin/darwin-arm64@1.0.0, an optional dependency of node_modules/bin (node_modules/@bin/darwin-arm64@0.9.0 does not match)');
  });
});

describe('complete-optional', () => {
  it("adds the registry's entry, with the parent's flags, and changes nothing when run again", () => {
    const first = run(lockfile());
    expect(first.stderr).toBe('');
    expect(first.status).toBe(0);
    expect(first.stdout).toBe('added @bin/darwin-arm64@1.0.0\n');
    const written = readFileSync(first.file, 'utf8');
    expect(JSON.parse(written).packages['node_modules/@bin/darwin-arm64']).toEqual({
      version: '1.0.0',
      integrity: 'sha512-darwin',
      cpu: ['arm64'],
      dev: true,
      engines: { node: '>=18' },
      license: 'MIT',
      optional: true,
      os: ['darwin'],
    });
    // npm's own layout: version and integrity first, the other scalars and arrays sorted, objects last.
    expect(written).toContain(
      '"node_modules/@bin/darwin-arm64": {\n      "version": "1.0.0",\n      "integrity": "sha512-darwin",\n      "cpu": [\n        "arm64"\n      ],\n      "dev": true,\n      "license": "MIT",\n      "optional": true,\n      "os": [\n        "darwin"\n      ],\n      "engines": {',
    );

    const again = spawnSync(process.execPath, [script, first.file], {
      encoding: 'utf8',
      env: { ...process.env, PATH: `${dir}${path.delimiter}${process.env.PATH}` },
    });
    expect(again.status).toBe(0);
    expect(again.stdout).toContain('nothing to add');
    expect(readFileSync(first.file, 'utf8')).toBe(written);
    expect(spawnSync(process.execPath, [script, '--check', first.file]).status).toBe(0);
  });

  it("describes a version the registry does not serve by the platform of the package's latest version, without integrity", () => {
    const { status, stdout, file } = run(
      lockfile({ 'node_modules/@bin/darwin-arm64': { version: '1.0.0', optional: true, dev: true } }, { '@bin/freebsd-x64': '1.0.0' }),
    );
    expect(status).toBe(0);
    expect(stdout).toBe('added @bin/freebsd-x64@1.0.0 (the registry has no 1.0.0: os/cpu/libc from 1.0.7, no integrity)\n');
    expect(JSON.parse(readFileSync(file, 'utf8')).packages['node_modules/@bin/freebsd-x64']).toEqual({
      version: '1.0.0',
      cpu: ['x64'],
      dev: true,
      optional: true,
      os: ['freebsd'],
    });
  });

  it('fails naming a package the registry does not know at all, after adding the ones it could', () => {
    const { status, stdout, stderr, file } = run(lockfile({}, { '@bin/gone': '1.0.0' }));
    expect(status).toBe(1);
    expect(stdout).toContain('added @bin/darwin-arm64@1.0.0');
    expect(stderr).toContain('still misses @bin/gone@1.0.0, an optional dependency of node_modules/bin: the registry has no package @bin/gone');
    expect(JSON.parse(readFileSync(file, 'utf8')).packages).not.toHaveProperty(['node_modules/@bin/gone']);
  });
});
