/**
 * What the import did and did not do. Every line of the checkout that the
 * import changed, removed or could not convert is one entry, so that the
 * printed report accounts for all of them.
 */

/** `changed`: rewritten or removed, with the reason; `unconverted`: left for the user, with the fix; `note`: something to know that changes no line. */
export type EntryKind = 'changed' | 'unconverted' | 'note';

export interface ReportEntry {
  kind: EntryKind;
  /** The file in the checkout, relative to it, e.g. `05_resize/modify-disk` or `SConstruct`. */
  file: string;
  /** 1-based line in that file, when the entry is about a line. */
  line?: number;
  /** The line as the checkout has it. */
  before?: string;
  /** What it became: lines of the new script, or none when it was removed. */
  after?: string[];
  /** Why it changed (changed), what to do (unconverted), or what to know (note). */
  text: string;
}

/** The marker of a line the user has to look at; `grep -rn 'vmlb-import:'` lists them all. */
export const TODO_MARKER = 'vmlb-import:';

/** Collects entries in the order the import meets them. */
export class ImportReport {
  readonly entries: ReportEntry[] = [];

  /** A line rewritten or removed (`after` empty), and why. */
  changed(file: string, line: number | undefined, before: string | undefined, after: string[], why: string): void {
    this.entries.push({ kind: 'changed', file, line, before, after, text: why });
  }

  /** A line left for the user, and the fix. */
  unconverted(file: string, line: number | undefined, before: string | undefined, fix: string): void {
    this.entries.push({ kind: 'unconverted', file, line, before, text: fix });
  }

  /** Something not imported, or different in vmlb, that changes no line. */
  note(file: string, text: string): void {
    this.entries.push({ kind: 'note', file, text });
  }

  /** The entries of one kind, in the order they were met. */
  of(kind: EntryKind): ReportEntry[] {
    return this.entries.filter((entry) => entry.kind === kind);
  }
}

const SECTION_TITLES: Record<EntryKind, string> = {
  changed: 'Changed',
  unconverted: `Not converted: each is marked '# ${TODO_MARKER}' in the imported script, or is outside the scripts`,
  note: 'Not imported, or different in vmlb',
};

/** The report as printed: one section per kind, each entry with its place, the line before and after, and the reason or fix. */
export function formatReport(report: ImportReport, header: string): string {
  const out = [header];
  for (const kind of ['changed', 'unconverted', 'note'] as const) {
    const entries = report.of(kind);
    out.push('', `${SECTION_TITLES[kind]} (${entries.length}):`);
    if (!entries.length) out.push('  (none)');
    for (const entry of entries) {
      out.push(`  ${entry.file}${entry.line === undefined ? '' : `:${entry.line}`}`);
      if (entry.before !== undefined) out.push(`    - ${entry.before.trim()}`);
      if (entry.after !== undefined) {
        if (entry.after.length === 0) out.push('    + (removed)');
        for (const line of entry.after) out.push(`    + ${line.trim()}`);
      }
      out.push(`    ${kind === 'unconverted' ? 'fix: ' : ''}${entry.text}`);
    }
  }
  return out.join('\n');
}
