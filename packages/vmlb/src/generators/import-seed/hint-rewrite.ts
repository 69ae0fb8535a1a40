import * as path from 'node:path';
import { HINT_NAMES, type ScriptKind } from '../../lib/image/hints';

/**
 * The original's hints and vmlb's look alike but are read differently. The
 * original took `# nocache` and `# noshare` at the very start of a line,
 * whatever followed (`# nocache (why)`), and the chroot hints anywhere in a
 * line of a build-layer, with `pN` for a partition (`# chroot-mount p2
 * /boot`) and, in its older versions, `# chroot-mount <path> <dst>` for a
 * bind mount of the layer folder. vmlb reads a hint from a whole comment line
 * of either script, with nothing after its arguments.
 */

/** One line's rewrite: the lines it becomes, why, and a file of the checkout to copy into the layer folder, if any. */
export interface HintChange {
  lines: string[];
  why: string;
  copy?: { from: string; to: string };
}

/** A hint line that cannot be carried over: disabled, with the fix. */
export interface HintProblem {
  fix: string;
}

export interface HintContext {
  kind: ScriptKind;
  /** The layer folder's path in the checkout, e.g. `20_another`. */
  layerFolder: string;
  /** Whether a checkout-relative path exists. */
  exists(checkoutRelative: string): boolean;
}

const VMLB_HINT = new RegExp(`^#\\s*(${HINT_NAMES.join('|')})(?=\\s|$)`);

/** Rewrites one line of a script if it is a hint to either tool; undefined when nothing needs to change. */
export function rewriteHintLine(line: string, context: HintContext): HintChange | HintProblem | undefined {
  const cacheHint = /^# (nocache|noshare)(.*)$/.exec(line);
  if (cacheHint) {
    const rest = cacheHint[2].trim();
    if (rest === '') return undefined;
    return {
      lines: [`# ${cacheHint[1]}`, `# ${rest.startsWith('(') ? rest : `(${rest})`}`],
      why: `vmlb reads '# ${cacheHint[1]}' only alone on its line; the text after it is now a comment of its own.`,
    };
  }
  if (context.kind === 'build-layer') {
    const bind = /# chroot-bind-mount (.*)$/.exec(line);
    if (bind) return mountHint(line, bind.index, 'chroot-bind-mount', bind[1], context);
    const mount = /# chroot-mount (.*)$/.exec(line);
    if (mount) return mountHint(line, mount.index, 'chroot-mount', mount[1], context);
  }
  const vmlbHint = VMLB_HINT.exec(line.trim());
  if (vmlbHint) {
    const text = line.trim().replace(/^#\s*/, '');
    return {
      lines: [`${line.slice(0, line.indexOf('#'))}# (${text})`],
      why: `a comment to the original, but vmlb would read it as its '${vmlbHint[1]}' hint${hintScope(vmlbHint[1], context.kind)}; the parentheses keep it a comment.`,
    };
  }
  return undefined;
}

/** Whether a rewrite result is a problem rather than a change. */
export function isProblem(result: HintChange | HintProblem): result is HintProblem {
  return 'fix' in result;
}

/** Why the original did not take the line as a hint, for the report. */
function hintScope(name: string, kind: ScriptKind): string {
  if (name === 'nocache' || name === 'noshare') return ' (the original took it only as "# ' + name + '" at the start of a line)';
  return kind === 'modify-disk' && name.startsWith('chroot') ? ' (the original read chroot hints only in build-layer scripts)' : '';
}

/** A chroot hint as the original read it (anywhere in a build-layer line, `pN` partitions, older bind mounts), in vmlb's form. */
function mountHint(
  line: string,
  at: number,
  name: 'chroot-bind-mount' | 'chroot-mount',
  argsText: string,
  context: HintContext,
): HintChange | HintProblem | undefined {
  const [source = '', target = '', ...extra] = argsText.trim().split(/\s+/);
  if (!target.startsWith('/')) {
    return {
      fix: `'# ${name} ${argsText.trim()}' needs an absolute path in the image as its second word, e.g. '# ${name} ${source || '<source>'} /opt/files'.`,
    };
  }
  const whys: string[] = [];
  let hint: string;
  let copy: HintChange['copy'];
  const partition = /^p?([0-9]+)$/.exec(source);
  if (name === 'chroot-mount' && partition) {
    hint = `# chroot-mount ${partition[1]} ${target}`;
    if (source.startsWith('p')) whys.push(`vmlb names a partition by its number ('${partition[1]}'), not by the nbd device's suffix '${source}'.`);
  } else {
    const bound = bindSource(source, context);
    if ('fix' in bound && name === 'chroot-mount' && !source.includes('/')) {
      return {
        fix:
          `'# chroot-mount ${source} ${target}': '${source}' is neither a partition (p1, p2, ...) nor a file or folder of ${context.layerFolder}/, which the original's older chroot-mount bound. ` +
          `Write the partition as '# chroot-mount <number> ${target}', or put '${source}' into the layer folder and use '# chroot-bind-mount ${source} ${target}'.`,
      };
    }
    if ('fix' in bound) return { fix: `'# ${name} ${source} ${target}': ${bound.fix}` };
    hint = `# chroot-bind-mount ${bound.source} ${target}`;
    if (name === 'chroot-mount')
      whys.push(`the original's older '# chroot-mount <path> <dst>' bound '${source}' of the layer folder; vmlb calls that chroot-bind-mount.`);
    if (bound.why) whys.push(bound.why);
    copy = bound.copy;
  }
  if (extra.length) {
    whys.push(`The original mounted at '${[target, ...extra].join(' ')}' (the rest of the line); vmlb takes one path, and the rest is a comment.`);
  }
  // A hint after a command (`cmd # chroot-mount ...`) counted in the original; vmlb wants it on a line of its own.
  const command = line.slice(0, at).trimEnd();
  if (command.trim())
    whys.push('The original read the hint after a command too; vmlb reads it only on a line of its own, so it has one now and the command stays.');
  const lines = [hint, ...(extra.length ? [`# (${extra.join(' ')})`] : []), ...(command.trim() ? [command] : [])];
  if (lines.length === 1 && lines[0] === line.trim()) return undefined;
  return { lines, why: whys.join(' ') || 'vmlb reads a hint alone on its line.', copy };
}

/** Where a bind mount's source is for vmlb: a path inside the layer folder, copied there when the original took it from beside the folder. */
function bindSource(source: string, context: HintContext): { source: string; why: string; copy?: { from: string; to: string } } | { fix: string } {
  // The original joined the layer folder and the source with '/', so a leading '/' still meant the layer folder.
  const relative = path.posix.normalize(source.replace(/^\/+/, '') || '.').replace(/(.)\/+$/, '$1');
  const changed = relative !== source ? `the original resolved '${source}' in the layer folder, which vmlb writes as '${relative}'.` : '';
  if (relative === '.' || relative === '..')
    return { fix: `the whole layer folder is at /mnt already in vmlb too; remove the hint, or bind a path inside it.` };
  if (!relative.startsWith('../')) {
    if (context.exists(path.posix.join(context.layerFolder, relative))) return { source: relative, why: changed };
    return { fix: `'${relative}' is not in ${context.layerFolder}/. Put it there, or remove the hint.` };
  }
  const inCheckout = path.posix.normalize(path.posix.join(context.layerFolder, relative));
  if (inCheckout.startsWith('../') || !context.exists(inCheckout)) {
    return {
      fix: `'${source}' is outside the checkout (or missing), so it was not imported. Copy it into ${context.layerFolder}/ and name it relative to that folder.`,
    };
  }
  const name = path.posix.basename(inCheckout);
  if (context.exists(path.posix.join(context.layerFolder, name))) {
    return {
      fix: `'${source}' is outside the layer folder, and vmlb binds only paths inside it; ${context.layerFolder}/${name} exists already, so it was not copied there. Copy it under another name and bind that.`,
    };
  }
  return {
    source: name,
    why: `vmlb binds only paths inside the layer folder: '${inCheckout}' of the checkout was copied to ${context.layerFolder}/${name}.`,
    copy: { from: inCheckout, to: name },
  };
}
