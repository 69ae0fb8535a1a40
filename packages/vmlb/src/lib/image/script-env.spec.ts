import { checkEnvDeclarations, declaredEnvironment, keyedEnvDefaults, keyedEnvNames } from './script-env';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { ImageConfigError, parseImageConfig, readImageEnv } from './image-config';

describe("image.json's env: variables for the layer scripts", () => {
  const declared = {
    VMLB_DEBIAN_MIRROR: { key: false, description: 'where debootstrap downloads from' },
    RELEASE: { key: true, default: 'bookworm' },
    FLAVOUR: { key: true },
  };

  it('reads each variable with whether it is in the key and its default', () => {
    expect(checkEnvDeclarations(declared)).toEqual({
      env: { VMLB_DEBIAN_MIRROR: { key: false }, RELEASE: { key: true, default: 'bookworm' }, FLAVOUR: { key: true } },
      problems: [],
    });
    expect(parseImageConfig(JSON.stringify({ base: { empty: '1G' }, env: declared }), 'images/x/image.json').env).toEqual(checkEnvDeclarations(declared).env);
    expect(parseImageConfig(JSON.stringify({ base: { empty: '1G' } }), 'images/x/image.json').env).toBeUndefined();
  });

  it('keys the variables declared with key: true, and their defaults', () => {
    const { env } = checkEnvDeclarations(declared);
    expect(keyedEnvNames(env)).toEqual(['FLAVOUR', 'RELEASE']);
    expect(keyedEnvDefaults(env)).toEqual({ RELEASE: 'bookworm' });
  });

  it("passes the build environment's value, else the default, and leaves out a variable with neither", () => {
    const { env } = checkEnvDeclarations(declared);
    expect(declaredEnvironment(env, { VMLB_DEBIAN_MIRROR: 'http://mirror.local/debian', HOME: '/home/me' })).toEqual({
      VMLB_DEBIAN_MIRROR: 'http://mirror.local/debian',
      RELEASE: 'bookworm',
    });
    expect(declaredEnvironment(env, { RELEASE: 'trixie', FLAVOUR: '' })).toEqual({ RELEASE: 'trixie', FLAVOUR: '' });
  });

  it.each<[string, unknown, string]>([
    [
      'a list',
      ['VMLB_DEBIAN_MIRROR'],
      'env must map variable names to {"key": true} or {"key": false}, e.g. {"VMLB_DEBIAN_MIRROR": {"key": false}}; got ["VMLB_DEBIAN_MIRROR"]',
    ],
    [
      'a name with a dash',
      { 'DEBIAN-MIRROR': { key: false } },
      'env: "DEBIAN-MIRROR" is not a variable name; use letters, digits and _, not starting with a digit (e.g. DEBIAN_MIRROR)',
    ],
    [
      'a name starting with a digit',
      { '2FA': { key: true } },
      'env: "2FA" is not a variable name; use letters, digits and _, not starting with a digit (e.g. _2FA)',
    ],
    [
      'a variable vmlb sets',
      { PATH: { key: false } },
      'env.PATH: vmlb sets PATH for every layer script itself (PATH, HOME, LANG, DEBIAN_FRONTEND, TERM, VMLB_IMAGE, VMLB_LAYER); remove it from env',
    ],
    [
      'a secret',
      { VMLB_SECRET_TOKEN: { key: false } },
      'env.VMLB_SECRET_TOKEN: secrets reach a layer script only through a # secret hint, as a file under /run; remove it from env',
    ],
    [
      'a proxy variable',
      { https_proxy: { key: false } },
      "env.https_proxy: layer scripts get the proxy variables from the build's environment already; remove it from env",
    ],
    [
      'no key',
      { RELEASE: { default: 'bookworm' } },
      'env.RELEASE must say whether its value is part of every layer\'s cache key: {"key": true} (a release name, a version: what changes the image) or {"key": false} (a mirror, a proxy: what changes only where the build downloads from); got {"default":"bookworm"}',
    ],
    [
      'key as a string',
      { RELEASE: { key: 'yes' } },
      'env.RELEASE must say whether its value is part of every layer\'s cache key: {"key": true} (a release name, a version: what changes the image) or {"key": false} (a mirror, a proxy: what changes only where the build downloads from); got {"key":"yes"}',
    ],
    ['a bare value', { RELEASE: 'bookworm' }, "env.RELEASE must say whether its value is part of every layer's cache key"],
    ['a default that is not a string', { JOBS: { key: true, default: 4 } }, 'env.JOBS.default must be a string, got 4 (write it in quotes: "4")'],
    ['an unknown field', { RELEASE: { key: true, defualt: 'bookworm' } }, 'env.RELEASE.defualt is not a known field (key, default, description)'],
  ])('refuses %s, naming the file, the bad name or value and the fix', (_label, env, message) => {
    const parse = () => parseImageConfig(JSON.stringify({ base: { empty: '1G' }, env }), 'images/x/image.json');
    expect(parse).toThrow(ImageConfigError);
    expect(parse).toThrow(`images/x/image.json does not match the image schema:\n`);
    expect(parse).toThrow(`  - ${message}`);
  });

  it("reports env's problems with the rest of the schema's", () => {
    expect(() => parseImageConfig(JSON.stringify({ base: { empty: '1G' }, bsae: 1, env: { 'A B': { key: true } } }), 'images/x/image.json')).toThrow(
      'images/x/image.json does not match the image schema:\n  - bsae is not a known field\n  - env: "A B" is not a variable name',
    );
  });

  it('reads only env for a layer task: the same declarations, the same message for a bad one, the full message for bad JSON', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'vmlb-image-env-'));
    const file = path.join(dir, 'image.json');
    try {
      writeFileSync(file, JSON.stringify({ base: { empty: '1G' }, env: declared }));
      expect(readImageEnv(file, 'images/x/image.json')).toEqual(checkEnvDeclarations(declared).env);
      writeFileSync(file, JSON.stringify({ base: { empty: '1G' } }));
      expect(readImageEnv(file, 'images/x/image.json')).toEqual({});
      writeFileSync(file, JSON.stringify({ base: { empty: '1G' }, env: { 'A B': { key: true } } }));
      expect(() => readImageEnv(file, 'images/x/image.json')).toThrow(ImageConfigError);
      expect(() => readImageEnv(file, 'images/x/image.json')).toThrow(
        'images/x/image.json does not match the image schema:\n  - env: "A B" is not a variable name',
      );
      writeFileSync(file, '{"base": ');
      expect(() => readImageEnv(file, 'images/x/image.json')).toThrow(/images\/x\/image.json is not valid JSON/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
