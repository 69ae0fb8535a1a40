/**
 * Quotes a word for a POSIX shell. Free of dependencies on purpose: the
 * plugin uses it while Nx builds its project graph, on every nx command.
 */
export function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** Quotes only words a shell would otherwise split or expand. */
export function shellWord(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : shellQuote(text);
}
