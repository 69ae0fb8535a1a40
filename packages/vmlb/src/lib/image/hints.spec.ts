import { describeHints, HintError, parseHints } from './hints';

const script = (...lines: string[]) => ['#!/bin/bash', 'set -euo pipefail', ...lines, 'echo done'].join('\n');

describe('parseHints', () => {
  it('finds no hints in a plain script', () => {
    expect(parseHints(script('# install nginx', 'apt-get install -y nginx'), 'x/build-layer', 'build-layer')).toEqual({
      nocache: false,
      noshare: false,
      bindMounts: [],
      partitionMounts: [],
      projectOutputs: [],
    });
  });

  it('reads every build-layer hint, with or without a space after #', () => {
    const hints = parseHints(
      script('# nocache', '#noshare', '# chroot-bind-mount files/etc /etc/app', '  # chroot-mount 2 /boot'),
      'images/prod/10_app/build-layer',
      'build-layer',
    );
    expect(hints).toEqual({
      nocache: true,
      noshare: true,
      bindMounts: [{ source: 'files/etc', target: '/etc/app' }],
      partitionMounts: [{ partition: 2, target: '/boot' }],
      projectOutputs: [],
    });
    expect(describeHints(hints)).toEqual(['nocache', 'noshare', 'chroot-bind-mount files/etc /etc/app', 'chroot-mount 2 /boot']);
  });

  it("reads # project-output with the project's build target by default", () => {
    const hints = parseHints(script('# project-output greeter /run/greeter', '# project-output @acme/site:bundle /srv/site/'), 'x/build-layer', 'build-layer');
    expect(hints.projectOutputs).toEqual([
      { project: 'greeter', target: 'build', mountPoint: '/run/greeter' },
      { project: '@acme/site', target: 'bundle', mountPoint: '/srv/site' },
    ]);
    expect(describeHints(hints)).toEqual(['project-output greeter:build /run/greeter', 'project-output @acme/site:bundle /srv/site']);
  });

  it.each([
    ['# project-output greeter', "'project-output' takes a project (with an optional :target) and a target path, got 1 arguments"],
    ['# project-output greeter:build:prod /run/g', "'greeter:build:prod' is not <project> or <project>:<target>"],
    ['# project-output greeter run/g', "mount target 'run/g' must be an absolute path inside the image"],
  ])('refuses %j, with its usage', (line, problem) => {
    expect(() => parseHints(script(line), 'x/build-layer', 'build-layer')).toThrow(
      `x/build-layer:3: ${problem} (usage: # project-output <project>[:<target>] <absolute path in image>, e.g. # project-output greeter:build /opt/greeter)`,
    );
  });

  it('reads # disk-devices, a build-layer hint without arguments', () => {
    const hints = parseHints(script('# disk-devices'), 'x/build-layer', 'build-layer');
    expect(hints.diskDevices).toBe(true);
    expect(describeHints(hints)).toEqual(['disk-devices']);
    expect(() => parseHints(script('# disk-devices'), 'x/modify-disk', 'modify-disk')).toThrow(
      "x/modify-disk:3: the 'disk-devices' hint only applies to build-layer scripts, and this is a modify-disk script (usage: # disk-devices)",
    );
    expect(() => parseHints(script('# disk-devices /dev/sda'), 'x/build-layer', 'build-layer')).toThrow("'disk-devices' takes no arguments, got '/dev/sda'");
  });

  it('refuses # project-output in a modify-disk script', () => {
    expect(() => parseHints(script('# project-output greeter /run/g'), 'x/modify-disk', 'modify-disk')).toThrow(
      "the 'project-output' hint only applies to build-layer scripts",
    );
  });

  it('reads disk-size in bytes for modify-disk', () => {
    const hints = parseHints(script('# disk-size 20G'), 'x/modify-disk', 'modify-disk');
    expect(hints.diskSize).toBe(20 * 1024 ** 3);
    expect(describeHints(hints)).toEqual(['disk-size 20 GiB']);
  });

  it.each([
    ['12h', 12 * 3600, '12h'],
    ['7d', 7 * 86_400, '7d'],
    ['2w', 14 * 86_400, '14d'],
    ['36h', 36 * 3600, '36h'],
  ])('reads # rebuild-every %s as %i seconds, in either kind of script', (period, seconds, label) => {
    for (const kind of ['build-layer', 'modify-disk'] as const) {
      const hints = parseHints(script(`# rebuild-every ${period}`), 'x', kind);
      expect(hints.rebuildEvery).toBe(seconds);
      expect(describeHints(hints)).toEqual([`rebuild-every ${label}`]);
    }
  });

  it('reads a hint followed by a comment: any text after nocache and noshare, text starting with ( or # after arguments', () => {
    const hints = parseHints(
      script(
        '# nocache (this hint tells vm-layer-builder to not cache the layer)',
        '# noshare keeps the secrets on this machine',
        '# chroot-bind-mount files/etc /etc/app (the config)',
        '# chroot-mount 2 /boot # the boot partition',
        '# rebuild-every 7d (security updates)',
        '# project-output greeter /run/greeter #the app',
      ),
      'x/build-layer',
      'build-layer',
    );
    expect(hints).toEqual({
      nocache: true,
      noshare: true,
      bindMounts: [{ source: 'files/etc', target: '/etc/app' }],
      partitionMounts: [{ partition: 2, target: '/boot' }],
      rebuildEvery: 7 * 86_400,
      projectOutputs: [{ project: 'greeter', target: 'build', mountPoint: '/run/greeter' }],
    });
    expect(parseHints(script('# disk-size 20G (for growpart)'), 'x/modify-disk', 'modify-disk').diskSize).toBe(20 * 1024 ** 3);
  });

  it('reads bind sources anywhere inside the workspace, relative to the layer folder, and read-write ones outside the layer folder', () => {
    const hints = parseHints(
      script(
        '# chroot-bind-mount ../common /opt/common',
        '# chroot-bind-mount ../../../libs/shared/ /opt/shared',
        '# chroot-bind-mount-rw ../cache/apt /var/cache/apt/archives (downloads, kept between builds)',
      ),
      'images/prod/10_app/build-layer',
      'build-layer',
    );
    expect(hints.bindMounts).toEqual([
      { source: '../common', target: '/opt/common' },
      { source: '../../../libs/shared', target: '/opt/shared' },
      { source: '../cache/apt', target: '/var/cache/apt/archives', readWrite: true },
    ]);
    expect(describeHints(hints)).toEqual([
      'chroot-bind-mount ../common /opt/common',
      'chroot-bind-mount ../../../libs/shared /opt/shared',
      'chroot-bind-mount-rw ../cache/apt /var/cache/apt/archives',
    ]);
    expect(() => parseHints(script('# chroot-bind-mount ../../../../etc /etc2'), 'images/prod/10_app/build-layer', 'build-layer')).toThrow(
      "images/prod/10_app/build-layer:3: bind-mount source '../../../../etc' leads out of the workspace; bind sources are paths inside the workspace, relative to the layer folder (usage: # chroot-bind-mount <path in the workspace, relative to the layer folder> <absolute path in image>)",
    );
  });

  it('reads # disk-devices followed by a comment that starts with ( or #; other words after it stay an error', () => {
    expect(parseHints(script('# disk-devices (for grub-install)'), 'x/build-layer', 'build-layer').diskDevices).toBe(true);
    expect(() => parseHints(script('# disk-devices for grub'), 'x/build-layer', 'build-layer')).toThrow(
      "x/build-layer:3: 'disk-devices' takes no arguments, got 'for grub'; text after it is a comment only when it starts with ( or # (usage: # disk-devices)",
    );
  });

  it('reads a partition as p2 (the suffix of its device) as it reads 2', () => {
    const hints = parseHints(script('# chroot-mount p2 /boot', '# chroot-mount 12 /srv'), 'x/build-layer', 'build-layer');
    expect(hints.partitionMounts).toEqual([
      { partition: 2, target: '/boot' },
      { partition: 12, target: '/srv' },
    ]);
    expect(describeHints(hints)).toEqual(['chroot-mount 2 /boot', 'chroot-mount 12 /srv']);
  });

  it('ignores words that only start like a hint, and hints not at the start of a comment', () => {
    const hints = parseHints(script('# nocaches are fine', 'echo "# nocache"', '# see nocache below'), 'x', 'build-layer');
    expect(hints.nocache).toBe(false);
  });

  it.each([
    ['# noshare nocache', 'build-layer', /x\/script:3: one hint per line: put '# nocache' on a line of its own \(usage: # noshare\)/],
    [
      '# disk-size 20G 30G',
      'modify-disk',
      /takes one size, got 2 arguments \('20G 30G'\); text after the arguments is a comment only when it starts with \( or #/,
    ],
    ['# disk-size 20G for growpart', 'modify-disk', /takes one size, got 3 arguments \('20G for growpart'\); text after the arguments is a comment only/],
    ['# chroot-mount (boot) /boot', 'build-layer', /'\(boot\)' is not a partition number/],
    ['# chroot-mount p0 /boot', 'build-layer', /'p0' is not a partition number \(1, 2, ... or p1, p2, ...\)/],
    ['# chroot-mount 2p /boot', 'build-layer', /'2p' is not a partition number/],
    ['# chroot-mount /dev/nbd0p2 /boot', 'build-layer', /'\/dev\/nbd0p2' is not a partition number/],
    ['# disk-size', 'modify-disk', /takes one size, got 0 arguments/],
    ['# disk-size huge', 'modify-disk', /'huge' is not a size.*usage: # disk-size <size>/],
    ['# disk-size 20G', 'build-layer', /'disk-size' hint only applies to modify-disk scripts/],
    ['# chroot-bind-mount /etc /etc', 'build-layer', /source '\/etc' must be relative to the layer folder, and inside the workspace/],
    [
      '# chroot-bind-mount ../../secrets /secrets',
      'build-layer',
      /source '..\/..\/secrets' leads out of the workspace; bind sources are paths inside the workspace/,
    ],
    [
      '# chroot-bind-mount-rw cache /var/cache/apt',
      'build-layer',
      /read-write bind-mount source 'cache' is in the layer folder, whose files are the layer's input/,
    ],
    ['# chroot-bind-mount-rw . /var/cache/apt', 'build-layer', /read-write bind-mount source '.' is in the layer folder/],
    ['# chroot-bind-mount-rw .. /ws', 'build-layer', /read-write bind-mount source '..' holds the layer folder/],
    ['# chroot-bind-mount-rw ../cache /var/cache', 'modify-disk', /'chroot-bind-mount-rw' hint only applies to build-layer scripts/],
    ['# chroot-bind-mount files etc', 'build-layer', /target 'etc' must be an absolute path/],
    ['# chroot-bind-mount files /', 'build-layer', /would hide the image's root/],
    ['# chroot-bind-mount files', 'build-layer', /takes a source and a target, got 1 arguments/],
    ['# chroot-mount boot /boot', 'build-layer', /'boot' is not a partition number/],
    ['# chroot-mount 0 /boot', 'build-layer', /'0' is not a partition number/],
    ['# chroot-mount 2 /boot', 'modify-disk', /only applies to build-layer scripts/],
    ['# rebuild-every', 'build-layer', /'rebuild-every' takes one period, got 0 arguments/],
    ['# rebuild-every 7', 'build-layer', /'7' is not a period \(usage: # rebuild-every <period>, e.g. # rebuild-every 7d/],
    ['# rebuild-every 0d', 'build-layer', /'0d' is not a period/],
    ['# rebuild-every 30m', 'build-layer', /'30m' is not a period.*units: h, d, w/],
    ['# rebuild-every 1d 2d', 'build-layer', /takes one period, got 2 arguments/],
  ] as const)('rejects %p in a %s script', (line, kind, message) => {
    expect(() => parseHints(script(line), 'x/script', kind)).toThrow(HintError);
    expect(() => parseHints(script(line), 'x/script', kind)).toThrow(message);
  });
});
