import { HintError, parseHints } from '../../lib/image/hints';
import { type DiskEdit, rewriteModifyDisk } from './disk-rewrite';
import { type HintContext, isProblem, rewriteHintLine } from './hint-rewrite';
import { type ImportReport, TODO_MARKER } from './import-report';
import { indentOf, logicalLines, shellWords } from './shell-text';

export interface ScriptContext extends HintContext {
  /** The script's path in the checkout, e.g. `05_resize/modify-disk`: where the report places each entry. */
  file: string;
}

export interface ImportedScript {
  text: string;
  /** Checkout files to copy into the layer folder (`from` relative to the checkout, `to` to the layer folder). */
  copies: { from: string; to: string }[];
}

/** What a build-layer cannot do in vmlb's sandbox, which the original's chroot allowed. */
const SANDBOXED_TOOLS = new Set(['mount', 'umount', 'chroot', 'mknod', 'modprobe', 'insmod', 'rmmod', 'losetup', 'qemu-nbd', 'kpartx', 'swapon']);
const SANDBOX_FIX =
  "vmlb runs build-layer in a sandbox that cannot mount, chroot, mknod or load kernel modules (docs/security.md): mount with a '# chroot-bind-mount' or '# chroot-mount' hint, or do it in a modify-disk layer.";

/** A line of the new script, and whether it is where the import removed one (blank lines around removals are merged). */
type Slot = string[] | 'removed';

/**
 * Rewrites one layer script into vmlb's form, reporting every line it
 * changes and every line it leaves for the user. Lines are never dropped
 * without an entry; a hint vmlb would refuse is disabled (commented out), as
 * a refused hint stops every nx command in the workspace, while a command is
 * left as it is under a `# vmlb-import:` note, so that the build says where
 * it fails.
 */
export function importScript(text: string, context: ScriptContext, report: ImportReport): ImportedScript {
  const lines = text.split(/\r?\n/);
  const slots: Slot[] = lines.map((line) => [line]);
  const copies: ImportedScript['copies'] = [];
  const head: string[] = [];
  const file = context.file;

  if (!text.startsWith('#!')) {
    head.push('#!/bin/sh');
    report.changed(
      file,
      1,
      lines[0],
      ['#!/bin/sh', lines[0]],
      'the original ran a script without a #! line with /bin/sh; vmlb runs a script only when its first line names the interpreter.',
    );
  }

  const commands = logicalLines(lines);
  for (const command of commands) {
    if (command.heredoc || command.first !== command.last) continue;
    const line = lines[command.first];
    const result = rewriteHintLine(line, context);
    if (!result) continue;
    if (isProblem(result)) {
      slots[command.first] = [`# ${TODO_MARKER} ${result.fix}`, `# ${line}`];
      report.unconverted(
        file,
        command.first + 1,
        line,
        `${result.fix} The hint is disabled (commented out): vmlb refuses a bad hint while reading the workspace.`,
      );
      continue;
    }
    slots[command.first] = result.lines;
    if (result.copy) copies.push(result.copy);
    report.changed(file, command.first + 1, line, result.lines, result.why);
  }

  if (context.kind === 'build-layer') {
    for (const command of commands) {
      if (command.heredoc || slots[command.first] === 'removed' || (slots[command.first] as string[])[0] !== lines[command.first]) continue;
      const words = shellWords(command.text);
      const operator = words.findIndex((word) => /^(\||\|\||&&|;|&|[0-9]?>.*)$/.test(word));
      const args = words.slice(words[0] === 'sudo' ? 1 : 0, operator < 0 ? undefined : operator);
      // `mount` alone only lists the mounts.
      if (!args[0] || !SANDBOXED_TOOLS.has(args[0]) || (args[0] === 'mount' && args.length < 2)) continue;
      keepWithNote(slots, lines, command.first, SANDBOX_FIX);
      report.unconverted(file, command.first + 1, command.text, SANDBOX_FIX);
    }
  } else {
    const disk = rewriteModifyDisk(lines);
    for (const [first, { last, edit }] of disk.edits) applyDiskEdit(slots, lines, first, last, edit, context, report);
    if (disk.diskSize) head.push(`# disk-size ${disk.diskSize}`);
    if (disk.partitions.length) noteExitTraps(slots, lines, disk.partitions, context, report);
  }

  const assembled = assemble(slots, head);
  return { text: validateHints(assembled, context, report), copies };
}

/** Puts one modify-disk edit into the new script and the report. */
function applyDiskEdit(slots: Slot[], lines: string[], first: number, last: number, edit: DiskEdit, context: ScriptContext, report: ImportReport): void {
  const before = lines
    .slice(first, last + 1)
    .map((line) => line.trim())
    .join(' ');
  if (edit.kind === 'changed') {
    slots[first] = edit.lines.length ? edit.lines : 'removed';
    for (let index = first + 1; index <= last; index++) slots[index] = 'removed';
    report.changed(context.file, first + 1, before, edit.shown ?? edit.lines, edit.why);
    return;
  }
  if (edit.disable) {
    slots[first] = [`${indentOf(lines[first])}# ${TODO_MARKER} ${edit.fix}`, ...lines.slice(first, last + 1).map((line) => `# ${line}`)];
    for (let index = first + 1; index <= last; index++) slots[index] = [];
    report.unconverted(context.file, first + 1, before, `${edit.fix} The line is commented out.`);
    return;
  }
  keepWithNote(slots, lines, first, edit.fix);
  report.unconverted(context.file, first + 1, before, edit.fix);
}

/** A line left for the user stays as it was, under its note, so the build fails on it if it cannot work. */
function keepWithNote(slots: Slot[], lines: string[], index: number, fix: string): void {
  slots[index] = [`${indentOf(lines[index])}# ${TODO_MARKER} ${fix}`, lines[index]];
}

/** The script's own EXIT trap and the one the import added to detach partitions replace each other. */
function noteExitTraps(slots: Slot[], lines: string[], partitions: string[], context: ScriptContext, report: ImportReport): void {
  const detach = partitions.map((name) => `losetup -d "$${name}"`).join('; ');
  const fix = `this EXIT trap and the one the import added to detach ${partitions.map((name) => `$${name}`).join(', ')} replace each other: put '${detach}' into this trap and remove the added one.`;
  lines.forEach((line, index) => {
    const slot = slots[index];
    if (slot === 'removed' || slot[0] !== line || !/^\s*trap\s.*\bEXIT\b/.test(line)) return;
    keepWithNote(slots, lines, index, fix);
    report.unconverted(context.file, index + 1, line, fix);
  });
}

/** The new script: `head` after its first line, and one blank line at most where lines were removed between blank ones. */
function assemble(slots: Slot[], head: string[]): string {
  const out: string[] = [];
  let pendingRemoval = false;
  slots.forEach((slot, index) => {
    if (index === 0 && head.length) {
      const first = slot === 'removed' ? [] : slot;
      if (head[0].startsWith('#!')) out.push(head[0], ...first, ...head.slice(1));
      else out.push(...first, ...head);
      return;
    }
    if (slot === 'removed') {
      pendingRemoval = true;
      return;
    }
    if (pendingRemoval && slot.length === 1 && slot[0].trim() === '' && out.at(-1)?.trim() === '') return;
    if (slot.length) pendingRemoval = false;
    out.push(...slot);
  });
  return out.join('\n');
}

/**
 * The script as vmlb will read it: any hint it would still refuse (one no
 * rule foresaw) is disabled, so that the workspace stays readable.
 */
function validateHints(text: string, context: ScriptContext, report: ImportReport): string {
  const lines = text.split('\n');
  for (let attempt = 0; attempt < lines.length; attempt++) {
    try {
      parseHints(lines.join('\n'), context.file, context.kind);
      break;
    } catch (error) {
      if (!(error instanceof HintError)) throw error;
      const match = /^.*?:([0-9]+): (.*)$/s.exec(error.message.slice(context.file.length));
      if (!match) throw error;
      const index = Number(match[1]) - 1;
      const line = lines[index];
      lines.splice(index, 1, `# ${TODO_MARKER} ${match[2]}`, `# ${line}`);
      report.unconverted(
        context.file,
        undefined,
        line,
        `${match[2]} The hint is disabled (commented out): vmlb refuses a bad hint while reading the workspace.`,
      );
    }
  }
  return lines.join('\n');
}
