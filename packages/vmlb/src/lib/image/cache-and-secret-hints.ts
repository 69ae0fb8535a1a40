/**
 * The hints that give a build-layer script something from outside the
 * image that never becomes part of the layer or its key: a cache folder
 * kept on this machine (`# cache-mount`). hints.ts calls these for their
 * lines.
 */

/** `# cache-mount <path in image> [id=<id>]`: a folder of this machine, shared by every layer, build and image that names the same id. */
export interface CacheMountHint {
  /** Absolute path inside the image where the cache is mounted while the script runs. */
  target: string;
  /** Which cache: `id=` of the hint, else derived from the path (`cacheMountIdFor`). */
  id: string;
}

/** Cache ids: folder names of one component, no leading dot (vmlb keeps its records in a dot folder beside them). */
const CACHE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
/** Where the sandbox has its own kernel filesystems and the read-only layer folder: no cache can be mounted there. */
const RESERVED_FOR_CACHE = ['/proc', '/sys', '/dev', '/mnt'];

const isAtOrUnder = (folder: string, target: string) => target === folder || target.startsWith(`${folder}/`);

/** The id a cache mount gets from its path when the hint names none: `/var/cache/apt/archives` -> `var-cache-apt-archives`. */
export function cacheMountIdFor(target: string): string {
  return target.replace(/^\/+/, '').split('/').filter(Boolean).join('-');
}

/** Reads the arguments of a `# cache-mount` line, one or two (hints.ts counts them); `checkTarget` makes the path an absolute one in the image. */
export function parseCacheMount(args: string[], checkTarget: (target: string) => string, fail: (problem: string) => never): CacheMountHint {
  const target = checkTarget(args[0]);
  const reserved = RESERVED_FOR_CACHE.find((folder) => isAtOrUnder(folder, target));
  if (reserved) fail(`a cache cannot be mounted at '${target}': ${reserved} is the sandbox's own`);
  let id = cacheMountIdFor(target);
  if (args.length === 2) {
    const match = /^id=(.*)$/.exec(args[1]);
    if (!match) fail(`'${args[1]}' is not id=<id>`);
    id = match[1];
  }
  if (!CACHE_ID.test(id)) {
    fail(
      `'${id}' is not a cache id: letters, digits, '.', '_' and '-', starting with a letter or digit, at most 100 characters${args.length === 2 ? '' : '; give one with id=<id>'}`,
    );
  }
  return { target, id };
}

/** What one script's cache mounts must not share: one id or path twice. Returns the problem, or undefined. */
export function conflictBetween(cacheMounts: CacheMountHint[]): string | undefined {
  const seen = new Map<string, string>();
  const claim = (key: string, what: string) => {
    const earlier = seen.get(key);
    seen.set(key, what);
    return earlier;
  };
  for (const mount of cacheMounts) {
    const earlier = claim(`id ${mount.id}`, `cache-mount ${mount.target}`) ?? claim(`path ${mount.target}`, `cache-mount ${mount.target}`);
    if (earlier) return `# cache-mount ${mount.target} uses the id or path of # ${earlier} again; give each cache mount its own path and id`;
  }
  return undefined;
}

/** Labels for listings: `cache-mount /var/cache/apt/archives`, with ` id=<id>` when it is not the path's. */
export function describeCacheMount(mount: CacheMountHint): string {
  return `cache-mount ${mount.target}${mount.id === cacheMountIdFor(mount.target) ? '' : ` id=${mount.id}`}`;
}
