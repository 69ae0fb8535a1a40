/**
 * What an SConstruct of the original tool says about the image as a whole:
 * where its base disk comes from, and the qcow2 options it creates layers
 * with. SConstruct is Python that nobody should run here, so it is read as
 * text, in the two shapes the original had.
 */

/** The base as SConstruct names it. */
export type SeedBase =
  /** `download_base_image()`: a URL (curl), the file name it decompresses to, and the MD5 SCons checks that file against. */
  | { kind: 'download'; url: string; fileName: string; md5?: string; line: number }
  /** `BASE_IMAGE = '<file>'`: a disk downloaded by hand into the checkout's root. */
  | { kind: 'local'; fileName: string; line: number };

/** A line of SConstruct that sets a qcow2 option vmlb does not take, e.g. `-o compat=0.10`. */
export interface QcowOptionLine {
  line: number;
  text: string;
  compat: string;
}

/** The base SConstruct names, or undefined when it has neither shape. */
export function parseSeedBase(sconstruct: string): SeedBase | undefined {
  const lines = sconstruct.split(/\r?\n/);
  const find = (pattern: RegExp) => {
    for (let index = 0; index < lines.length; index++) {
      if (lines[index].trimStart().startsWith('#')) continue;
      const match = pattern.exec(lines[index]);
      if (match) return { match, line: index + 1 };
    }
    return undefined;
  };

  const baseName = find(/\bbase_name\s*=\s*['"]([^'"]+)['"]/);
  const url = find(/\b((?:https?|ftp|file):\/\/[^\s'"]+)/);
  if (baseName && url) {
    const fileName = baseName.match[1];
    const md5 = find(/\bmd5(?:sum)?\s*=\s*['"]([0-9a-fA-F]{32})['"]/);
    return {
      kind: 'download',
      // The original formats the URL with the file name: '.../{0}.xz'.format(base_name), or '%s' % base_name.
      url: url.match[1].replace(/\{0\}|%s/g, fileName),
      fileName,
      md5: md5?.match[1].toLowerCase(),
      line: url.line,
    };
  }
  const local = find(/^\s*BASE_IMAGE\s*=\s*['"]([^'"]+)['"]/);
  return local ? { kind: 'local', fileName: local.match[1], line: local.line } : undefined;
}

/** The lines that create layers with a qcow2 `compat` other than vmlb's. */
export function qcowCompatLines(sconstruct: string): QcowOptionLine[] {
  return sconstruct.split(/\r?\n/).flatMap((text, index) => {
    const match = /-o\s*['"]?[^\s'"]*\bcompat=([0-9.]+)/.exec(text);
    return match && !text.trimStart().startsWith('#') ? [{ line: index + 1, text, compat: match[1] }] : [];
  });
}
