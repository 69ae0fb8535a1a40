/** Names a mistyped one probably meant (one contains the other), for "did you mean" in errors; at most `limit`. */
export function similarNames(wanted: string, names: Iterable<string>, limit = 5): string[] {
  return [...names].filter((name) => name !== wanted && (name.includes(wanted) || wanted.includes(name))).slice(0, limit);
}
