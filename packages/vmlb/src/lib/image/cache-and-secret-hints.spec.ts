import { cacheMountIdFor, secretVariable } from './cache-and-secret-hints';
import { describeHints, HintError, parseHints } from './hints';

const script = (...lines: string[]) => ['#!/bin/bash', 'set -euo pipefail', ...lines, 'echo done'].join('\n');

describe('# cache-mount', () => {
  it('reads a path, with the id taken from it unless id= names one', () => {
    const hints = parseHints(script('# cache-mount /var/cache/apt/archives', '# cache-mount /root/.cache/pip/ id=pip'), 'x/build-layer', 'build-layer');
    expect(hints.cacheMounts).toEqual([
      { target: '/var/cache/apt/archives', id: 'var-cache-apt-archives' },
      { target: '/root/.cache/pip', id: 'pip' },
    ]);
    expect(hints.noshare).toBe(false);
    expect(describeHints(hints)).toEqual(['cache-mount /var/cache/apt/archives', 'cache-mount /root/.cache/pip id=pip']);
  });

  it('takes text after its arguments that starts with ( or # as a comment', () => {
    const hints = parseHints(script("# cache-mount /var/cache/apt/archives (apt's downloads)", '# cache-mount /srv/cache id=srv # shared'), 'x', 'build-layer');
    expect(hints.cacheMounts).toEqual([
      { target: '/var/cache/apt/archives', id: 'var-cache-apt-archives' },
      { target: '/srv/cache', id: 'srv' },
    ]);
  });

  it('derives ids from paths', () => {
    expect(cacheMountIdFor('/var/cache/apt/archives')).toBe('var-cache-apt-archives');
    expect(cacheMountIdFor('/root/.cache/go-build')).toBe('root-.cache-go-build');
  });

  it.each([
    [
      '# cache-mount',
      /x\/script:3: 'cache-mount' takes a path and an optional id=<id>, got 0 arguments \(usage: # cache-mount <absolute path in image> \[id=<id>\]/,
    ],
    ['# cache-mount var/cache', /mount target 'var\/cache' must be an absolute path inside the image/],
    ['# cache-mount /', /would hide the image's root/],
    ['# cache-mount /proc/cache', /a cache cannot be mounted at '\/proc\/cache': \/proc is the sandbox's own/],
    ['# cache-mount /mnt', /\/mnt is the sandbox's own/],
    ['# cache-mount /var/cache apt', /'apt' is not id=<id>/],
    ['# cache-mount /var/cache id=../etc', /'..\/etc' is not a cache id/],
    ['# cache-mount /var/cache id=', /'' is not a cache id/],
    ['# cache-mount /.cache', /'.cache' is not a cache id: .*; give one with id=<id>/],
    [
      '# cache-mount /var/cache id=a b',
      /takes a path and an optional id=<id>, got 3 arguments \('\/var\/cache id=a b'\); text after the arguments is a comment only when it starts with \( or #/,
    ],
  ])('refuses %j, naming the line, the problem and the usage', (line, message) => {
    expect(() => parseHints(script(line), 'x/script', 'build-layer')).toThrow(HintError);
    expect(() => parseHints(script(line), 'x/script', 'build-layer')).toThrow(message);
  });

  it('refuses one path or id twice in a script', () => {
    expect(() => parseHints(script('# cache-mount /var/a id=c', '# cache-mount /var/b id=c'), 'x/script', 'build-layer')).toThrow(
      'x/script:4: # cache-mount /var/b uses the id or path of # cache-mount /var/a again; give each cache mount its own path and id',
    );
    expect(() => parseHints(script('# cache-mount /var/a', '# cache-mount /var/a/ id=other'), 'x/script', 'build-layer')).toThrow('uses the id or path');
  });

  it('is for build-layer scripts only', () => {
    expect(() => parseHints(script('# cache-mount /var/cache'), 'x/modify-disk', 'modify-disk')).toThrow(
      "x/modify-disk:3: the 'cache-mount' hint only applies to build-layer scripts, and this is a modify-disk script",
    );
  });
});

describe('# secret', () => {
  it('reads a name and a path under /run; the layer becomes noshare unless the hint says share', () => {
    const hints = parseHints(script('# secret apt_token /run/secrets/apt'), 'x/build-layer', 'build-layer');
    expect(hints.secrets).toEqual([{ name: 'apt_token', target: '/run/secrets/apt', share: false }]);
    expect(hints.noshare).toBe(true);
    expect(describeHints(hints)).toEqual(['noshare', 'secret apt_token /run/secrets/apt']);

    const shared = parseHints(script('# secret npm /run/npmrc share'), 'x/build-layer', 'build-layer');
    expect(shared.secrets).toEqual([{ name: 'npm', target: '/run/npmrc', share: true }]);
    expect(shared.noshare).toBe(false);
    expect(describeHints(shared)).toEqual(['secret npm /run/npmrc share']);

    // One secret without share keeps the layer on this machine; # noshare always does.
    expect(parseHints(script('# secret a /run/a share', '# secret b /run/b'), 'x', 'build-layer').noshare).toBe(true);
    expect(parseHints(script('# noshare', '# secret a /run/a share'), 'x', 'build-layer').noshare).toBe(true);
  });

  it('takes text after its arguments that starts with ( or # as a comment', () => {
    const hints = parseHints(script("# secret token /run/token (the registry's)", '# secret key /run/key share # only a rate limit'), 'x', 'build-layer');
    expect(hints.secrets).toEqual([
      { name: 'token', target: '/run/token', share: false },
      { name: 'key', target: '/run/key', share: true },
    ]);
  });

  it('names the variables a value comes from', () => {
    expect(secretVariable('apt_token')).toBe('VMLB_SECRET_APT_TOKEN');
  });

  it.each([
    [
      '# secret token',
      /'secret' takes a name, a path under \/run and an optional 'share', got 1 arguments \(usage: # secret <name> <path under \/run> \[share\]/,
    ],
    [
      '# secret token /run/t share extra',
      /got 4 arguments \('token \/run\/t share extra'\); text after the arguments is a comment only when it starts with \( or #/,
    ],
    ['# secret token /etc/apt/auth.conf', /a secret must be under \/run \(a tmpfs of the build, never part of the image\), not at '\/etc\/apt\/auth.conf'/],
    ['# secret token /run', /a secret must be under \/run/],
    ['# secret token /run/../etc/x', /a secret must be under \/run/],
    ['# secret token run/x', /must be an absolute path inside the image/],
    ['# secret 1token /run/t', /'1token' is not a secret name: a letter, then letters, digits or '_'/],
    ['# secret to-ken /run/t', /'to-ken' is not a secret name/],
    ['# secret token /run/t shared', /'shared' is not 'share'/],
  ])('refuses %j, naming the line, the problem and the usage', (line, message) => {
    expect(() => parseHints(script(line), 'x/script', 'build-layer')).toThrow(HintError);
    expect(() => parseHints(script(line), 'x/script', 'build-layer')).toThrow(message);
  });

  it('refuses a name or path twice, and a secret inside a cache mount (it would land on the host)', () => {
    expect(() => parseHints(script('# secret a /run/a', '# secret a /run/b'), 'x/script', 'build-layer')).toThrow(
      'x/script:4: # secret a /run/b uses the name or path of # secret a again',
    );
    expect(() => parseHints(script('# secret a /run/a', '# secret b /run/a'), 'x/script', 'build-layer')).toThrow('uses the name or path');
    expect(() => parseHints(script('# cache-mount /run/cache', '# secret a /run/cache/a'), 'x/script', 'build-layer')).toThrow(
      'x/script:4: # secret a /run/cache/a overlaps # cache-mount /run/cache: the secret would land in the cache folder on this machine',
    );
  });

  it('is for build-layer scripts only (a modify-disk script runs on the host)', () => {
    expect(() => parseHints(script('# secret a /run/a'), 'x/modify-disk', 'modify-disk')).toThrow("the 'secret' hint only applies to build-layer scripts");
  });
});
