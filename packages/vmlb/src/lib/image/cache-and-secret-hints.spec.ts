import { cacheMountIdFor } from './cache-and-secret-hints';
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
