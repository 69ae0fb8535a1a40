import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { ScriptKind } from '../../lib/image/hints';
import { PARTITION_HELPER_TEXT } from './disk-rewrite';
import { ImportReport } from './import-report';
import { importScript } from './script-rewrite';

const FIXTURE = path.join(__dirname, '../../../test/fixtures/vm-layer-builder');

/** Imports a script given as lines; returns the new script's lines and the report. */
function imported(kind: ScriptKind, ...lines: string[]) {
  const report = new ImportReport();
  const result = importScript(lines.join('\n'), { kind, file: `10_x/${kind}`, layerFolder: '10_x', exists: (relative) => relative === '10_x/files' }, report);
  return { lines: result.text.split('\n'), report, text: result.text };
}
const modifyDisk = (...lines: string[]) => imported('modify-disk', '#!/bin/bash', 'set -e', 'source="$1" target="$2" device="$3"', ...lines);
const helperLines = PARTITION_HELPER_TEXT.split('\n');

describe('importScript', () => {
  describe("the original's resize layer (05_resize/modify-disk)", () => {
    const report = new ImportReport();
    const text = importScript(
      readFileSync(path.join(FIXTURE, '05_resize/modify-disk'), 'utf8'),
      { kind: 'modify-disk', file: '05_resize/modify-disk', layerFolder: '05_resize', exists: () => false },
      report,
    ).text;

    it('loses the overlay and nbd lines, gets a disk-size hint, and reaches partition 1 through a loop device', () => {
      expect(text).toBe(
        [
          '#!/bin/bash',
          '# disk-size 128M',
          '',
          'set -e',
          '',
          'if [ "$#" -ne 3 ]; then',
          '    echo >&2 "Usage: $0 <source> <target> <device>"',
          '    exit 1',
          'fi',
          '',
          'source="$1"',
          'target="$2"',
          'device="$3"',
          '',
          'growpart "$device" 1',
          '',
          ...helperLines,
          'part1=$(vmlb_partition "$device" 1)',
          `trap 'losetup -d "$part1"' EXIT`,
          'e2fsck -y -f "${part1}"',
          'resize2fs -f "${part1}"',
          '',
        ].join('\n'),
      );
    });

    it('reports each line it changed, with its line number, and none it could not convert', () => {
      expect(report.of('changed').map((entry) => [entry.line, entry.before])).toEqual([
        [14, 'qemu-img create -f qcow2 -b "$source" -o compat=0.10 "$target" 128M'],
        [16, 'qemu-nbd --connect="$device" "$target"'],
        [18, 'trap "qemu-nbd --disconnect $device" EXIT'],
        [20, 'sleep 1'],
        [24, 'e2fsck -y -f "${device}p1"'],
        [25, 'resize2fs -f "${device}p1"'],
      ]);
      expect(report.of('unconverted')).toEqual([]);
    });

    it('is valid bash', () => {
      expect(() => execFileSync('bash', ['-n'], { input: text })).not.toThrow();
    });
  });

  describe('modify-disk: the overlay vmlb creates', () => {
    it.each([
      ['qemu-img create -f qcow2 -b "$1" "$2" 20G', '20G'],
      ['sudo qemu-img create -f qcow2 -b ${source} -o compat=0.10 ${target} 4096M || true', '4096M'],
      ['qemu-img create -f qcow2 \\\n  -b "$source" \\\n  "$target" 20G', '20G'],
    ])('%j goes, and its size becomes the disk-size hint', (line, size) => {
      const { lines, report } = modifyDisk(...line.split('\n'), 'growpart "$device" 1');
      expect(lines).toEqual(['#!/bin/bash', `# disk-size ${size}`, 'set -e', 'source="$1" target="$2" device="$3"', 'growpart "$device" 1']);
      expect(report.of('changed')).toEqual([expect.objectContaining({ line: 4, after: [], text: expect.stringContaining(`'# disk-size ${size}'`) })]);
    });

    it('without a size, goes with no hint: the overlay is as big as its parent', () => {
      expect(modifyDisk('qemu-img create -f qcow2 -b "$source" "$target"').lines).toEqual(['#!/bin/bash', 'set -e', 'source="$1" target="$2" device="$3"']);
    });

    it('with a size that is not a number, is commented out with a note: it would replace the disk vmlb has in use', () => {
      const { lines, report } = modifyDisk('qemu-img create -f qcow2 -b "$source" "$target" "$size"');
      expect(lines.slice(3)).toEqual([
        expect.stringMatching(
          /^# vmlb-import: vmlb creates the overlay before the script runs, so this line would replace the disk vmlb has in use; its size '\$size'/,
        ),
        '# qemu-img create -f qcow2 -b "$source" "$target" "$size"',
      ]);
      expect(report.of('unconverted')).toHaveLength(1);
    });

    it('leaves qemu-img create of another file alone', () => {
      const { lines, report } = modifyDisk('qemu-img create -f raw /tmp/scratch.img 1G');
      expect(lines.at(-1)).toBe('qemu-img create -f raw /tmp/scratch.img 1G');
      expect(report.entries).toEqual([]);
    });

    it('leaves qemu tools that open $2 under a note: vmlb has it open', () => {
      const { lines } = modifyDisk('qemu-img resize "$target" +1G');
      expect(lines.slice(3)).toEqual([expect.stringMatching(/^# vmlb-import: vmlb has \$2 open while the script runs/), 'qemu-img resize "$target" +1G']);
    });
  });

  describe('modify-disk: qemu-nbd', () => {
    it.each([
      ['qemu-nbd -c "$3" "$2"'],
      ['qemu-nbd --connect $device $target'],
      ['sudo qemu-nbd --connect=/dev/nbd0 "$target"'],
      ['qemu-nbd -d "$device" || true'],
      ['qemu-nbd --disconnect "$3" >/dev/null 2>&1'],
    ])('%j goes', (line) => {
      const { lines, report } = modifyDisk(line, 'growpart "$device" 1');
      expect(lines.slice(3)).toEqual(['growpart "$device" 1']);
      expect(report.of('changed')).toHaveLength(1);
    });

    it('the sleep after the connect goes with it, through the trap between them; a later sleep stays', () => {
      const { lines } = modifyDisk(
        'qemu-nbd -c "$device" "$target"',
        'trap "qemu-nbd -d $device" EXIT',
        'sleep 1',
        'udevadm settle',
        'growpart "$device" 1',
        'sleep 2',
      );
      expect(lines.slice(3)).toEqual(['growpart "$device" 1', 'sleep 2']);
    });

    it('a trap that does more loses only the disconnect', () => {
      expect(modifyDisk(`trap 'qemu-nbd -d "$device"; rm -rf "$tmp"' EXIT INT`).lines.at(-1)).toBe(`trap 'rm -rf "$tmp"' EXIT INT`);
    });

    it('connecting the source stays under a note', () => {
      const { lines, report } = modifyDisk('qemu-nbd -r --connect=/dev/nbd1 "$source"');
      expect(lines.slice(3)).toEqual([
        expect.stringMatching(/^# vmlb-import: vmlb has the new overlay \(\$2\) attached as \$3/),
        'qemu-nbd -r --connect=/dev/nbd1 "$source"',
      ]);
      expect(report.of('unconverted')).toEqual([expect.objectContaining({ line: 4, before: 'qemu-nbd -r --connect=/dev/nbd1 "$source"' })]);
    });

    it("partprobe of the device goes: vmlb's device never has partition nodes", () => {
      expect(modifyDisk('partprobe "$device"', 'blockdev --rereadpt $3').lines.slice(3)).toEqual([]);
    });

    it('kpartx stays under a note', () => {
      expect(modifyDisk('kpartx -a "$device"').lines.slice(3)).toEqual([
        expect.stringMatching(/^# vmlb-import: vmlb's device has no partition nodes/),
        'kpartx -a "$device"',
      ]);
    });
  });

  describe('modify-disk: partition nodes', () => {
    it.each([
      ['mkfs.ext4 "${device}p2"', 'mkfs.ext4 "${part2}"', '"$device"'],
      ['mkfs.ext4 "$device"p2', 'mkfs.ext4 "$part2"', '"$device"'],
      ['mkfs.ext4 ${3}p2', 'mkfs.ext4 ${part2}', '"$3"'],
      ['mkfs.ext4 $3p2', 'mkfs.ext4 ${part2}', '"$3"'],
      ['mkfs.ext4 /dev/nbd0p2', 'mkfs.ext4 ${part2}', '"$3"'],
    ])('%j becomes %j, after the lines that attach the partition', (line, replaced, device) => {
      const { lines, report } = modifyDisk(line);
      expect(lines.slice(3)).toEqual([...helperLines, `part2=$(vmlb_partition ${device} 2)`, `trap 'losetup -d "$part2"' EXIT`, replaced]);
      expect(report.of('changed')).toEqual([expect.objectContaining({ line: 4, before: line, after: [lines.at(-3), lines.at(-2), replaced] })]);
    });

    it('attaches each partition once, detaches all on exit, and attaches again after the table changed', () => {
      const { lines } = modifyDisk(
        'mount "${device}p1" /mnt/a',
        'mount "${device}p2" /mnt/b',
        'umount /mnt/a',
        'growpart "$device" 1',
        'resize2fs "${device}p1"',
        'e2fsck -f "${device}p2"',
      );
      expect(lines.slice(3 + helperLines.length)).toEqual([
        'part1=$(vmlb_partition "$device" 1)',
        `trap 'losetup -d "$part1"' EXIT`,
        'mount "${part1}" /mnt/a',
        'part2=$(vmlb_partition "$device" 2)',
        `trap 'losetup -d "$part1"; losetup -d "$part2"' EXIT`,
        'mount "${part2}" /mnt/b',
        'umount /mnt/a',
        'growpart "$device" 1',
        'losetup -d "$part1"; part1=$(vmlb_partition "$device" 1)',
        'resize2fs "${part1}"',
        'losetup -d "$part2"; part2=$(vmlb_partition "$device" 2)',
        'e2fsck -f "${part2}"',
      ]);
    });

    it('names the variables vmlb_partN when the script has a partN of its own, and indents them as the line they serve', () => {
      const { lines } = modifyDisk('part1=foo', 'if true; then', '  mkfs.ext4 "${device}p1"', 'fi');
      expect(lines.slice(-4)).toEqual([
        '  vmlb_part1=$(vmlb_partition "$device" 1)',
        `  trap 'losetup -d "$vmlb_part1"' EXIT`,
        '  mkfs.ext4 "${vmlb_part1}"',
        'fi',
      ]);
    });

    it("notes the script's own EXIT trap, which and the added one replace each other", () => {
      const { lines, report } = modifyDisk(`trap 'rm -rf "$tmp"' EXIT`, 'mkfs.ext4 "${device}p1"');
      expect(lines[3]).toMatch(
        /^# vmlb-import: this EXIT trap and the one the import added to detach \$part1 replace each other: put 'losetup -d "\$part1"' into this trap/,
      );
      expect(lines[4]).toBe(`trap 'rm -rf "$tmp"' EXIT`);
      expect(report.of('unconverted')).toHaveLength(1);
    });

    it('leaves a heredoc body as data', () => {
      const { lines, report } = modifyDisk(`cat > /tmp/x <<'EOF'`, 'mkfs.ext4 "${device}p1"', 'EOF');
      expect(lines.slice(3)).toEqual([`cat > /tmp/x <<'EOF'`, 'mkfs.ext4 "${device}p1"', 'EOF']);
      expect(report.entries).toEqual([]);
    });
  });

  describe('build-layer: what the sandbox cannot do', () => {
    it.each([['mount -t proc proc /proc'], ['sudo chroot / true'], ['mknod /dev/null c 1 3'], ['modprobe nbd']])('%j stays under a note', (line) => {
      const { lines, report } = imported('build-layer', '#!/bin/sh', line);
      expect(lines).toEqual(['#!/bin/sh', expect.stringMatching(/^# vmlb-import: vmlb runs build-layer in a sandbox/), line]);
      expect(report.of('unconverted')).toEqual([expect.objectContaining({ line: 2, before: line })]);
    });

    it("leaves 'mount' alone when it only lists", () => {
      expect(imported('build-layer', '#!/bin/sh', 'mount | grep -q proc').report.entries).toEqual([]);
    });
  });

  it('gives a script without #! the /bin/sh the original ran it with', () => {
    const { lines, report } = imported('build-layer', 'yum -y update');
    expect(lines).toEqual(['#!/bin/sh', 'yum -y update']);
    expect(report.of('changed')).toEqual([expect.objectContaining({ line: 1, text: expect.stringContaining('without a #! line with /bin/sh') })]);
  });

  it('disables a hint vmlb would still refuse, so that the workspace stays readable', () => {
    const { lines, report } = imported('build-layer', '#!/bin/sh', '# chroot-mount 0 /boot', 'true');
    expect(lines).toEqual([
      '#!/bin/sh',
      "# vmlb-import: '0' is not a partition number (1, 2, ... or p1, p2, ...) (usage: # chroot-mount <partition number, e.g. 2 or p2> <absolute path in image>)",
      '# # chroot-mount 0 /boot',
      'true',
    ]);
    expect(report.of('unconverted')).toEqual([
      expect.objectContaining({ before: '# chroot-mount 0 /boot', text: expect.stringContaining('The hint is disabled') }),
    ]);
  });

  it('changes nothing in a script that is vmlb-ready, and reports nothing', () => {
    const script = ['#!/bin/bash', '# nocache', '# chroot-bind-mount files /etc/app', 'set -euo pipefail', 'cp -a files/. /etc/app/'];
    expect(imported('build-layer', ...script)).toMatchObject({ lines: script, report: { entries: [] } });
  });
});
