import { type LogicalLine, argumentNames, indentOf, logicalLines, refersTo, shellWords, unquote, variableOf } from './shell-text';

/**
 * The original ran `modify-disk <source> <target> <nbd device>` with nothing
 * created or attached: the script made the overlay (`qemu-img create -b
 * "$1" "$2" 20G`), connected it with qemu-nbd and used the partition nodes
 * the kernel gave it (`${device}p1`). vmlb creates the overlay and attaches
 * it before the script runs, and its device has no partition nodes.
 */

/** What becomes of one command: the lines that replace it (none: removed) and why; or the fix, when it stays for the user. */
export type DiskEdit =
  | {
      kind: 'changed';
      lines: string[];
      why: string;
      /** The lines the report shows, when not all: the helper function is shown once by name. */ shown?: string[];
    }
  | { kind: 'unconverted'; fix: string; disable: boolean };

export interface DiskRewrite {
  /** Edits by the index of a command's first physical line; its other lines go with it. */
  edits: Map<number, { last: number; edit: DiskEdit }>;
  /** `# disk-size` for the script's head, from the size the script gave its overlay. */
  diskSize?: string;
  /** The variables holding the partitions attached for the script, e.g. `part1`. */
  partitions: string[];
}

const IGNORED_TAIL = /\s*(?:(?:[0-9&]?>>?\s*\/dev\/null|2>&1)\s*)*(?:\|\|\s*(?:true|:)\s*)?;?\s*$/;
const QEMU_IMG_VALUE_OPTIONS = new Set(['-f', '-F', '-b', '-o', '--object']);
const TABLE_TOOLS = new Set(['growpart', 'sfdisk', 'parted', 'sgdisk', 'fdisk', 'gdisk', 'cfdisk']);
const QEMU_SIZE = /^[0-9]+(\.[0-9]+)?[KMGTkmgt]?$/;

const DEVICE_SETTLED = 'vmlb attaches the device before the script runs, so there is nothing to wait for.';

/** Finds the commands of a modify-disk script that vmlb does for it, and the partition nodes it must reach another way. */
export function rewriteModifyDisk(lines: string[]): DiskRewrite {
  const devices = argumentNames(lines, 3);
  const targets = argumentNames(lines, 2);
  const edits: DiskRewrite['edits'] = new Map();
  const set = (command: LogicalLine, edit: DiskEdit) => edits.set(command.first, { last: command.last, edit });
  let diskSize: string | undefined;
  let connected = false;
  const commands = logicalLines(lines).filter((command) => !command.heredoc && command.text.trim() !== '' && !command.text.trim().startsWith('#'));
  const partitions = new PartitionAttacher(devices, lines.join('\n'));

  for (const command of commands) {
    const afterConnect: boolean = connected;
    connected = false;
    const simple = command.text.replace(IGNORED_TAIL, '');
    const words = shellWords(simple);
    const isSimple = !words.some((word) => ['&&', '||', ';', '|', '&'].includes(word) || word.endsWith(';'));
    const args = words[0] === 'sudo' ? words.slice(1) : words;
    const tool = args[0] ?? '';

    if (tool === 'qemu-img' && args[1] === 'create') {
      const positional = qemuImgPositional(args.slice(2));
      if (positional[0] !== undefined && refersTo(positional[0], targets)) {
        const size = positional[1] === undefined ? undefined : unquote(positional[1]);
        if (!isSimple)
          set(command, {
            kind: 'unconverted',
            fix: 'vmlb creates the overlay before the script runs: remove this qemu-img create from the command, and give its size as a "# disk-size <size>" hint.',
            disable: false,
          });
        else if (size === undefined) set(command, { kind: 'changed', lines: [], why: 'vmlb creates the overlay on $1 before the script runs, as big as $1.' });
        else if (QEMU_SIZE.test(size)) {
          diskSize = size;
          set(command, {
            kind: 'changed',
            lines: [],
            why: `vmlb creates the overlay on $1 before the script runs; '# disk-size ${size}' at the top of the script makes it ${size}.`,
          });
        } else {
          set(command, {
            kind: 'unconverted',
            fix: `vmlb creates the overlay before the script runs, so this line would replace the disk vmlb has in use; its size '${size}' is not a number, so add a "# disk-size <size>" hint (e.g. 20G) by hand.`,
            disable: true,
          });
        }
        continue;
      }
    }

    if (tool === 'qemu-nbd') {
      const connectTo = optionValue(args, ['-c', '--connect']);
      const disconnect = optionValue(args, ['-d', '--disconnect']);
      if (connectTo !== undefined && refersTo(connectTo, devices, true) && isSimple && refersTo(args[args.length - 1], targets)) {
        set(command, {
          kind: 'changed',
          lines: [],
          why: 'vmlb attaches the new overlay before the script runs and passes its device as $3; it has no nbd device to connect.',
        });
        connected = true;
        continue;
      }
      if (disconnect !== undefined && refersTo(disconnect, devices, true) && isSimple) {
        set(command, { kind: 'changed', lines: [], why: 'vmlb detaches the device itself after the script.' });
        continue;
      }
      set(command, {
        kind: 'unconverted',
        fix: 'vmlb has the new overlay ($2) attached as $3 while the script runs: use $3 for it; to read $1, copy from it with qemu-img convert -U rather than attaching it.',
        disable: false,
      });
      continue;
    }

    if (tool === 'trap' && /qemu-nbd/.test(command.text)) {
      const edit = nbdTrap(command.text, devices);
      set(command, edit);
      // The usual `trap "qemu-nbd --disconnect ..." EXIT` sits between the connect and its `sleep 1`.
      connected = afterConnect && edit.kind === 'changed' && edit.lines.length === 0;
      continue;
    }

    if (afterConnect && isSimple && (tool === 'sleep' || (tool === 'udevadm' && args[1] === 'settle'))) {
      set(command, { kind: 'changed', lines: [], why: `it waited for qemu-nbd's partition nodes; ${DEVICE_SETTLED}` });
      connected = true;
      continue;
    }

    if (isSimple && (tool === 'partprobe' || (tool === 'blockdev' && args.includes('--rereadpt')) || (tool === 'partx' && /^-[au]/.test(args[1] ?? '')))) {
      if (args.slice(1).some((word) => refersTo(word, devices, true))) {
        set(command, {
          kind: 'changed',
          lines: [],
          why: "it made the kernel create partition nodes, which vmlb's device never has; each partition the script uses is attached at its offset instead.",
        });
        continue;
      }
    }
    if (tool === 'kpartx' || (tool === 'losetup' && args.some((word) => /^(-P|--partscan)$/.test(word)))) {
      set(command, {
        kind: 'unconverted',
        fix: `vmlb's device has no partition nodes: attach a partition with losetup --offset/--sizelimit, as images/tiny/00_disk/modify-disk does.`,
        disable: false,
      });
      continue;
    }
    if (/\bqemu-(img|nbd)\b/.test(command.text) && words.some((word) => refersTo(word, targets) || word.includes('$2') || word.includes('${2}'))) {
      set(command, {
        kind: 'unconverted',
        fix: 'vmlb has $2 open while the script runs, so qemu tools must not open it: work on the device $3, and give a new size with a "# disk-size <size>" hint.',
        disable: false,
      });
      continue;
    }

    const attached = partitions.rewrite(command, lines);
    if (attached) set(command, attached);
    if (TABLE_TOOLS.has(tool) && args.slice(1).some((word) => refersTo(word, devices, true))) partitions.tableChanged();
  }
  return { edits, diskSize, partitions: partitions.names() };
}

/** The words of `qemu-img create` that are not options: the file, then the size. */
function qemuImgPositional(args: string[]): string[] {
  const positional: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (QEMU_IMG_VALUE_OPTIONS.has(args[i])) i++;
    else if (!args[i].startsWith('-')) positional.push(args[i]);
  }
  return positional;
}

/** The value of an option given as `-c X`, `--connect X`, `--connect=X` or `-cX`. */
function optionValue(args: string[], names: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const word = unquote(args[i]);
    for (const name of names) {
      if (word === name) return args[i + 1] ?? '';
      if (word.startsWith(`${name}=`)) return word.slice(name.length + 1);
      if (name.length === 2 && word.startsWith(name) && word.length > 2 && !word.startsWith('--')) return word.slice(2);
    }
  }
  return undefined;
}

/** A trap that disconnects the nbd device: without that part, or removed when nothing else is left. */
function nbdTrap(text: string, devices: Set<string>): DiskEdit {
  const match = /^(\s*)trap\s+(['"])(.*)\2\s+(.+?)\s*$/.exec(text);
  if (!match)
    return { kind: 'unconverted', fix: 'vmlb detaches the device itself after the script: remove the qemu-nbd --disconnect from this trap.', disable: false };
  const [, indent, quote, body, signals] = match;
  const parts = body.split(/\s*(?:;|&&)\s*/).filter((part) => part.trim() !== '');
  const kept = parts.filter((part) => {
    const words = shellWords(part.replace(IGNORED_TAIL, ''));
    const disconnect = words[0] === 'qemu-nbd' || (words[0] === 'sudo' && words[1] === 'qemu-nbd') ? optionValue(words, ['-d', '--disconnect']) : undefined;
    return disconnect === undefined || !(refersTo(disconnect, devices, true) || /^\$\{?[A-Za-z_0-9]+\}?$/.test(unquote(disconnect)));
  });
  if (kept.length === parts.length)
    return { kind: 'unconverted', fix: 'vmlb detaches the device itself after the script: remove the qemu-nbd part of this trap.', disable: false };
  const why = 'vmlb detaches the device itself after the script.';
  return kept.length ? { kind: 'changed', lines: [`${indent}trap ${quote}${kept.join('; ')}${quote} ${signals}`], why } : { kind: 'changed', lines: [], why };
}

/**
 * `${device}p1` named a partition node that qemu-nbd's device had. vmlb's
 * device has none, so a partition is attached as a loop device at its
 * offset, as vmlb's own modify-disk layers do (images/prod/05_resize), just
 * before the first command that uses it, and again after a command that
 * changes the partition table.
 */
class PartitionAttacher {
  private helperWritten = false;
  private readonly attached = new Map<number, { name: string; stale: boolean }>();
  private readonly prefix: string;
  private readonly pattern: RegExp;

  constructor(devices: Set<string>, script: string) {
    this.prefix = /\bpart[0-9]+\b/.test(script) ? 'vmlb_part' : 'part';
    const names = [...devices].map((name) => name.replace(/[^A-Za-z0-9_]/g, ''));
    const named = names.map((name) => `"\\$${name}"p|"\\$\\{${name}\\}"p|\\$\\{${name}\\}p${/^[0-9]$/.test(name) ? `|\\$${name}p` : ''}`).join('|');
    this.pattern = new RegExp(`(${named}|/dev/nbd[0-9]+p)([0-9]+)`, 'g');
  }

  /** The variables of the partitions attached so far, for the note on the script's own EXIT trap. */
  names(): string[] {
    return [...this.attached.values()].map((partition) => partition.name);
  }

  /** After growpart, sfdisk and the like, an attached loop device has the old offset or size: attach again before the next use. */
  tableChanged(): void {
    for (const partition of this.attached.values()) partition.stale = true;
  }

  /** The command with its partition nodes replaced, after the lines that attach them; undefined when it names none. */
  rewrite(command: LogicalLine, lines: string[]): DiskEdit | undefined {
    const original = lines.slice(command.first, command.last + 1);
    if (!original.some((line) => this.pattern.test(line))) return undefined;
    this.pattern.lastIndex = 0;
    const indent = indentOf(original[0]);
    const before: string[] = [];
    const helper: string[] = [];
    const used: string[] = [];
    const replaced = original.map((line) =>
      line.replace(this.pattern, (_all, node: string, number: string) => {
        const device = node.startsWith('/dev/nbd') ? '"$3"' : `"$${variableOf(node.replace(/p$/, '').replace(/^"|"$/g, '')) ?? '3'}"`;
        const name = this.attach(Number(number), device, indent, before, helper);
        used.push(`${node}${number} → $${name}`);
        return node.startsWith('"') ? `"$${name}"` : `\${${name}}`;
      }),
    );
    return {
      kind: 'changed',
      lines: [...helper, ...before, ...replaced],
      shown: [...before, ...replaced],
      why:
        `vmlb's device has no partition nodes: ${[...new Set(used)].join(', ')}, a loop device at the partition's offset (detached on exit)` +
        (helper.length ? ', attached by the vmlb_partition function written before this line.' : '.'),
    };
  }

  /** The variable holding partition `number`, writing the lines that attach it (and the helper, once) into `out` when needed. */
  private attach(number: number, device: string, indent: string, out: string[], helper: string[]): string {
    const known = this.attached.get(number);
    if (known && !known.stale) return known.name;
    const name = `${this.prefix}${number}`;
    if (!this.helperWritten) {
      helper.push(...PARTITION_HELPER.map((line) => (line ? indent + line : line)));
      this.helperWritten = true;
    }
    if (known) {
      out.push(`${indent}losetup -d "$${name}"; ${name}=$(vmlb_partition ${device} ${number})`);
      known.stale = false;
      return name;
    }
    this.attached.set(number, { name, stale: false });
    out.push(`${indent}${name}=$(vmlb_partition ${device} ${number})`);
    out.push(`${indent}trap '${[...this.attached.values()].map((each) => `losetup -d "$${each.name}"`).join('; ')}' EXIT`);
    return name;
  }
}

/** A partition of a disk device as a loop device, in POSIX sh so that it runs under any shebang. */
const PARTITION_HELPER = [
  '# The device vmlb passes has no partition nodes: vmlb_partition <disk> <n>',
  '# attaches partition <n> as a loop device at its offset and prints it.',
  'vmlb_partition() {',
  '  set -- "$1" "$2" $(sfdisk --dump "$1" | sed -n "s|^$1p\\{0,1\\}$2 *: *start= *\\([0-9]*\\), size= *\\([0-9]*\\).*|\\1 \\2|p")',
  '  [ -n "${3:-}" ] || { echo "$1 has no partition $2" >&2; return 1; }',
  '  losetup --find --show --offset $(($3 * 512)) --sizelimit $(($4 * 512)) "$1"',
  '}',
];

/** Exposed for the rules' specs. */
export const PARTITION_HELPER_TEXT = PARTITION_HELPER.join('\n');
