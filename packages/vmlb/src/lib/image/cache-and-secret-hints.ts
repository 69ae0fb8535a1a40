/**
 * The two hints that give a build-layer script something from outside the
 * image that never becomes part of the layer or its key: a cache folder
 * kept on this machine (`# cache-mount`), and a secret supplied when the
 * build runs (`# secret`). hints.ts calls these for their lines.
 */

/** `# cache-mount <path in image> [id=<id>]`: a folder of this machine, shared by every layer, build and image that names the same id. */
export interface CacheMountHint {
  /** Absolute path inside the image where the cache is mounted while the script runs. */
  target: string;
  /** Which cache: `id=` of the hint, else derived from the path (`cacheMountIdFor`). */
  id: string;
}

/** `# secret <name> <path under /run> [share]`: a value from VMLB_SECRET_<NAME> or a file, in a tmpfs while the script runs. */
export interface SecretHint {
  name: string;
  /** Absolute path under /run (a tmpfs of the build) where the script reads it. */
  target: string;
  /** `share`: the layer may go to a remote cache like any other; without it the layer is noshare. */
  share: boolean;
}

/** Cache ids: folder names of one component, no leading dot (vmlb keeps its records in a dot folder beside them). */
const CACHE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
/** Secret names become environment variable names (`VMLB_SECRET_<NAME>`). */
const SECRET_NAME = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
/** Where the sandbox has its own kernel filesystems and the read-only layer folder: no cache can be mounted there. */
const RESERVED_FOR_CACHE = ['/proc', '/sys', '/dev', '/mnt'];

const isAtOrUnder = (folder: string, target: string) => target === folder || target.startsWith(`${folder}/`);

/** The id a cache mount gets from its path when the hint names none: `/var/cache/apt/archives` -> `var-cache-apt-archives`. */
export function cacheMountIdFor(target: string): string {
  return target.replace(/^\/+/, '').split('/').filter(Boolean).join('-');
}

/** The environment variable that holds a secret's value; `<it>_FILE` names a file holding it. */
export function secretVariable(name: string): string {
  return `VMLB_SECRET_${name.toUpperCase()}`;
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

/** Reads the arguments of a `# secret` line, two or three (hints.ts counts them); `checkTarget` makes the path an absolute one in the image. */
export function parseSecret(args: string[], checkTarget: (target: string) => string, fail: (problem: string) => never): SecretHint {
  const [name, rawTarget, flag] = args;
  if (!SECRET_NAME.test(name))
    fail(`'${name}' is not a secret name: a letter, then letters, digits or '_' (it names the variable ${secretVariable('<name>')})`);
  const target = checkTarget(rawTarget);
  // /run is a fresh tmpfs of the build: nothing written there reaches the image.
  if (!target.startsWith('/run/')) fail(`a secret must be under /run (a tmpfs of the build, never part of the image), not at '${target}'`);
  if (flag !== undefined && flag !== 'share') fail(`'${flag}' is not 'share'`);
  return { name, target, share: flag === 'share' };
}

/**
 * What one script's cache mounts and secrets must not share: one id or
 * path twice, a secret where a cache is mounted. Returns the problem, or
 * undefined.
 */
export function conflictBetween(cacheMounts: CacheMountHint[], secrets: SecretHint[]): string | undefined {
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
  for (const secret of secrets) {
    const earlier = claim(`secret ${secret.name}`, `secret ${secret.name}`) ?? claim(`path ${secret.target}`, `secret ${secret.name}`);
    if (earlier) return `# secret ${secret.name} ${secret.target} uses the name or path of # ${earlier} again`;
    const cache = cacheMounts.find((mount) => isAtOrUnder(mount.target, secret.target) || isAtOrUnder(secret.target, mount.target));
    if (cache)
      return `# secret ${secret.name} ${secret.target} overlaps # cache-mount ${cache.target}: the secret would land in the cache folder on this machine`;
  }
  return undefined;
}

/** Labels for listings: `cache-mount /var/cache/apt/archives`, with ` id=<id>` when it is not the path's. */
export function describeCacheMount(mount: CacheMountHint): string {
  return `cache-mount ${mount.target}${mount.id === cacheMountIdFor(mount.target) ? '' : ` id=${mount.id}`}`;
}

/** `secret <name> <path>` (never a value: the hint has none). */
export function describeSecret(secret: SecretHint): string {
  return `secret ${secret.name} ${secret.target}${secret.share ? ' share' : ''}`;
}
