import { type ScriptKind, parseHints } from '../../lib/image/hints';
import { type HintContext, rewriteHintLine } from './hint-rewrite';

/** A checkout with 20_another/{dir,files} and shared/ beside the layer folders. */
const EXISTING = new Set(['20_another/dir', '20_another/files', 'shared', '20_another/taken', 'other/taken']);
const context = (kind: ScriptKind = 'build-layer'): HintContext => ({ kind, layerFolder: '20_another', exists: (relative) => EXISTING.has(relative) });

/** What vmlb reads from lines, as a layer script. */
const hintsOf = (lines: string[], kind: ScriptKind = 'build-layer') => parseHints(['#!/bin/sh', ...lines].join('\n'), 'x', kind);

describe('rewriteHintLine', () => {
  describe("'# nocache' and '# noshare', which the original took at the start of a line whatever followed", () => {
    it.each([
      ['# nocache (this hint tells vm-layer-builder to not cache the layer)', ['# nocache', '# (this hint tells vm-layer-builder to not cache the layer)']],
      ['# noshare because of the licence', ['# noshare', '# (because of the licence)']],
      ['# nocache: always fresh', ['# nocache', '# (: always fresh)']],
    ])('%j becomes the hint alone, the rest a comment vmlb reads as none', (line, expected) => {
      const result = rewriteHintLine(line, context());
      expect(result).toEqual({ lines: expected, why: expect.stringContaining('only alone on its line') });
      const name = expected[0].slice(2) as 'nocache' | 'noshare';
      expect(hintsOf(expected)[name]).toBe(true);
    });

    it('leaves the hint alone on its line as it is, in either script', () => {
      expect(rewriteHintLine('# nocache', context())).toBeUndefined();
      expect(rewriteHintLine('# noshare', context('modify-disk'))).toBeUndefined();
    });

    it.each([['#nocache'], ['  # nocache'], ['#  noshare']])('%j, a comment to the original, stays one: vmlb would read it as a hint', (line) => {
      const result = rewriteHintLine(line, context());
      expect(result).toEqual({
        lines: [`${line.slice(0, line.indexOf('#'))}# (${line.trim().replace(/^#\s*/, '')})`],
        why: expect.stringContaining('at the start of a line'),
      });
      expect(hintsOf((result as { lines: string[] }).lines)).toMatchObject({ nocache: false, noshare: false });
    });
  });

  describe('hints the original never had, or not in that script', () => {
    it.each([
      ['# disk-size 20G', 'modify-disk', '# (disk-size 20G)'],
      ['# rebuild-every 7d', 'build-layer', '# (rebuild-every 7d)'],
      ['# chroot-mount p2 /boot', 'modify-disk', '# (chroot-mount p2 /boot)'],
      ['# chroot-bind-mount dir /opt', 'modify-disk', '# (chroot-bind-mount dir /opt)'],
    ] as const)('%j in a %s stays a comment', (line, kind, expected) => {
      expect(rewriteHintLine(line, context(kind))).toEqual({ lines: [expected], why: expect.stringContaining('vmlb would read it as') });
      expect(() => hintsOf([expected], kind)).not.toThrow();
    });
  });

  describe("'# chroot-mount', a partition in the original's last versions", () => {
    it("'p2' becomes the partition's number", () => {
      const result = rewriteHintLine('# chroot-mount p2 /boot', context());
      expect(result).toEqual({
        lines: ['# chroot-mount 2 /boot'],
        why: "vmlb names a partition by its number ('2'), not by the nbd device's suffix 'p2'.",
        copy: undefined,
      });
      expect(hintsOf(['# chroot-mount 2 /boot']).partitionMounts).toEqual([{ partition: 2, target: '/boot' }]);
    });

    it('text after the mount point becomes a comment', () => {
      expect(rewriteHintLine('# chroot-mount p2 /boot (the boot partition)', context())).toMatchObject({
        lines: ['# chroot-mount 2 /boot', '# ((the boot partition))'],
        why: expect.stringContaining("The original mounted at '/boot (the boot partition)'"),
      });
    });

    it('a hint after a command gets a line of its own, and the command stays', () => {
      expect(rewriteHintLine('echo boot # chroot-mount p1 /boot', context())).toMatchObject({ lines: ['# chroot-mount 1 /boot', 'echo boot'] });
    });

    it("is left as it is when it is vmlb's already", () => {
      expect(rewriteHintLine('# chroot-mount 2 /boot', context())).toBeUndefined();
    });

    it("'<path> <dst>', the older versions' bind mount of the layer folder, becomes chroot-bind-mount", () => {
      expect(rewriteHintLine('# chroot-mount files /etc/app', context())).toMatchObject({
        lines: ['# chroot-bind-mount files /etc/app'],
        why: expect.stringContaining("older '# chroot-mount <path> <dst>' bound 'files'"),
      });
    });

    it('refuses a source that is neither a partition nor in the layer folder, with the fix', () => {
      expect(rewriteHintLine('# chroot-mount boot /boot', context())).toEqual({
        fix:
          "'# chroot-mount boot /boot': 'boot' is neither a partition (p1, p2, ...) nor a file or folder of 20_another/, which the original's older chroot-mount bound. " +
          "Write the partition as '# chroot-mount <number> /boot', or put 'boot' into the layer folder and use '# chroot-bind-mount boot /boot'.",
      });
    });
  });

  describe("'# chroot-bind-mount'", () => {
    it('is left as it is for a path in the layer folder', () => {
      expect(rewriteHintLine('# chroot-bind-mount dir /opt/dir', context())).toBeUndefined();
    });

    it("a leading '/' meant the layer folder to the original: it goes", () => {
      expect(rewriteHintLine('# chroot-bind-mount /dir /opt/dir', context())).toMatchObject({
        lines: ['# chroot-bind-mount dir /opt/dir'],
        why: "the original resolved '/dir' in the layer folder, which vmlb writes as 'dir'.",
      });
    });

    it('a source beside the layer folder is copied into it', () => {
      expect(rewriteHintLine('# chroot-bind-mount ../shared /opt/shared', context())).toEqual({
        lines: ['# chroot-bind-mount shared /opt/shared'],
        why: "vmlb binds only paths inside the layer folder: 'shared' of the checkout was copied to 20_another/shared.",
        copy: { from: 'shared', to: 'shared' },
      });
    });

    it.each([
      ['# chroot-bind-mount ../../outside /x', "'../../outside' is outside the checkout (or missing)"],
      ['# chroot-bind-mount ../other/taken /x', '20_another/taken exists already'],
      ['# chroot-bind-mount missing /x', "'missing' is not in 20_another/"],
      ['# chroot-bind-mount dir opt/dir', 'needs an absolute path in the image'],
      ['# chroot-bind-mount ./ /x', 'the whole layer folder is at /mnt already'],
    ])('refuses %j with the fix', (line, fix) => {
      expect(rewriteHintLine(line, context())).toEqual({ fix: expect.stringContaining(fix) });
    });
  });

  it('leaves other comments and commands alone', () => {
    for (const line of ['# install the packages', '#!/bin/bash', 'echo "# nocache"', '', 'cp -a dir /'])
      expect(rewriteHintLine(line, context())).toBeUndefined();
  });
});
