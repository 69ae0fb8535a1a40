/**
 * Just enough of the shell's grammar to rewrite layer scripts line by line:
 * commands continued with a backslash, heredoc bodies (data, never
 * rewritten), words with their quotes, and the variables a script keeps its
 * arguments in.
 */

/** One command as the shell reads it: physical lines `first`..`last` (0-based), joined where a line ends in a backslash. */
export interface LogicalLine {
  first: number;
  last: number;
  text: string;
  /** A line of a heredoc body: data for a command, not a command. */
  heredoc: boolean;
}

const HEREDOC_START = /<<(-?)\s*(['"]?)([A-Za-z_][A-Za-z0-9_]*)\2/;

/** Groups a script's lines into commands, so that a rule sees a continued command whole. */
export function logicalLines(lines: string[]): LogicalLine[] {
  const result: LogicalLine[] = [];
  let index = 0;
  while (index < lines.length) {
    const first = index;
    let text = lines[index];
    while (/(^|[^\\])\\$/.test(text) && !text.trimStart().startsWith('#') && index + 1 < lines.length) {
      index += 1;
      text = `${text.slice(0, -1)} ${lines[index].trim()}`;
    }
    result.push({ first, last: index, text, heredoc: false });
    index += 1;
    const heredoc = text.trimStart().startsWith('#') ? null : HEREDOC_START.exec(text);
    if (!heredoc) continue;
    while (index < lines.length) {
      const body = lines[index];
      result.push({ first: index, last: index, text: body, heredoc: true });
      index += 1;
      if ((heredoc[1] ? body.replace(/^\t+/, '') : body) === heredoc[3]) break;
    }
  }
  return result;
}

/** The words of a command, each as written (quotes kept), up to an unquoted comment. */
export function shellWords(text: string): string[] {
  const words: string[] = [];
  let word = '';
  let quote: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const char = text[i];
    if (quote) {
      word += char;
      if (char === '\\' && quote === '"' && i + 1 < text.length) word += text[++i];
      else if (char === quote) quote = null;
    } else if (/\s/.test(char)) {
      if (word) words.push(word);
      word = '';
    } else if (char === '#' && word === '') {
      break;
    } else {
      word += char;
      if (char === '\\' && i + 1 < text.length) word += text[++i];
      else if (char === '"' || char === "'") quote = char;
    }
  }
  if (word) words.push(word);
  return words;
}

/** A word without its quotes: `"$target"` → `$target`, `--connect="$d"` → `--connect=$d`. */
export function unquote(word: string): string {
  return word.replace(/'([^']*)'|"((?:[^"\\]|\\.)*)"/g, (_all, single: string | undefined, double: string | undefined) => single ?? double ?? '');
}

/** The variable a word is nothing but a reference to (`"$device"`, `${3}`), or undefined. */
export function variableOf(word: string): string | undefined {
  const match = /^\$(?:([A-Za-z_][A-Za-z0-9_]*|[0-9])|\{([A-Za-z_][A-Za-z0-9_]*|[0-9]+)\})$/.exec(unquote(word));
  return match ? (match[1] ?? match[2]) : undefined;
}

/**
 * The names a script keeps one of its arguments in, the argument itself
 * included: `device="$3"`, `local target=$2`, `a="$1" b="$2"` all count.
 */
export function argumentNames(lines: string[], position: number): Set<string> {
  const names = new Set([String(position)]);
  const assignment = new RegExp(
    `(?:^|[\\s;])(?:(?:local|readonly|declare|export)\\s+)?([A-Za-z_][A-Za-z0-9_]*)=(?:"\\$\\{?${position}\\}?"|\\$\\{?${position}\\}?)(?=$|[\\s;])`,
    'g',
  );
  for (const line of lines) {
    if (line.trimStart().startsWith('#')) continue;
    for (const match of line.matchAll(assignment)) names.add(match[1]);
  }
  return names;
}

/** Whether a word names one of `names` (a variable, or an nbd device path such as /dev/nbd0 when `nbdPaths`). */
export function refersTo(word: string, names: Set<string>, nbdPaths = false): boolean {
  const variable = variableOf(word);
  if (variable !== undefined) return names.has(variable);
  return nbdPaths && /^\/dev\/nbd[0-9]+$/.test(unquote(word));
}

/** The leading blanks of a line, to indent what is inserted before it the same way. */
export function indentOf(line: string): string {
  return /^\s*/.exec(line)![0];
}
