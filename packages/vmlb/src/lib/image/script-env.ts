/**
 * image.json's `env`: the variables of the build's environment that reach
 * the image's layer scripts, which otherwise get a clean environment. Each
 * says whether its value is part of every layer's cache key.
 */

/** One declared variable. */
export interface EnvDeclaration {
  /** Whether its value is part of every layer's key (`{ "env": NAME }` input). */
  key: boolean;
  /** The value scripts get when the build's environment has none. */
  default?: string;
}

export type EnvDeclarations = Record<string, EnvDeclaration>;

/** A name a shell and `env` accept. */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** What vmlb sets for every layer script itself (lib/build/chroot.ts, scriptEnvironment): declaring them would hide vmlb's. */
const SET_BY_VMLB = ['PATH', 'HOME', 'LANG', 'DEBIAN_FRONTEND', 'TERM', 'VMLB_IMAGE', 'VMLB_LAYER'];

/** What layer scripts get from the build's environment already. */
const PASSED_ALREADY = ['http_proxy', 'https_proxy', 'ftp_proxy', 'no_proxy', 'all_proxy'].flatMap((name) => [name, name.toUpperCase()]);

const FIELDS = ['key', 'default', 'description'];

/**
 * Checks image.json's `env` and returns it normalised, or the problems
 * found, each naming the bad name or value and the fix.
 */
export function checkEnvDeclarations(raw: unknown): { env: EnvDeclarations; problems: string[] } {
  const env: EnvDeclarations = {};
  const problems: string[] = [];
  if (raw === undefined) return { env, problems };
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    problems.push(`env must map variable names to {"key": true} or {"key": false}, e.g. {"VMLB_DEBIAN_MIRROR": {"key": false}}; got ${JSON.stringify(raw)}`);
    return { env, problems };
  }
  for (const [name, value] of Object.entries(raw)) {
    if (!ENV_NAME.test(name)) {
      problems.push(`env: ${JSON.stringify(name)} is not a variable name; use letters, digits and _, not starting with a digit (e.g. ${suggestName(name)})`);
      continue;
    }
    if (SET_BY_VMLB.includes(name)) {
      problems.push(`env.${name}: vmlb sets ${name} for every layer script itself (${SET_BY_VMLB.join(', ')}); remove it from env`);
      continue;
    }
    // In a script's environment a secret would reach every process it starts, and a keyed one the task hash.
    if (name.startsWith('VMLB_SECRET_')) {
      problems.push(`env.${name}: secrets reach a layer script only through a # secret hint, as a file under /run; remove it from env`);
      continue;
    }
    if (PASSED_ALREADY.includes(name)) {
      problems.push(`env.${name}: layer scripts get the proxy variables from the build's environment already; remove it from env`);
      continue;
    }
    const entry = value as Record<string, unknown> | null;
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry) || typeof entry.key !== 'boolean') {
      problems.push(
        `env.${name} must say whether its value is part of every layer's cache key: {"key": true} (a release name, a version: what changes the image) ` +
          `or {"key": false} (a mirror, a proxy: what changes only where the build downloads from); got ${JSON.stringify(value)}`,
      );
      continue;
    }
    const unknown = Object.keys(entry).filter((field) => !FIELDS.includes(field));
    if (unknown.length) problems.push(`env.${name}.${unknown[0]} is not a known field (${FIELDS.join(', ')})`);
    if (entry.default !== undefined && typeof entry.default !== 'string') {
      problems.push(`env.${name}.default must be a string, got ${JSON.stringify(entry.default)} (write it in quotes: "${String(entry.default)}")`);
    }
    if (entry.description !== undefined && typeof entry.description !== 'string') {
      problems.push(`env.${name}.description must be a string, got ${JSON.stringify(entry.description)}`);
    }
    env[name] = { key: entry.key, ...(typeof entry.default === 'string' ? { default: entry.default } : {}) };
  }
  return { env, problems };
}

/** A variable name made of what `name` holds, for the message. */
function suggestName(name: string): string {
  const cleaned = name.replace(/[^A-Za-z0-9_]+/g, '_');
  return /^[0-9]/.test(cleaned) || cleaned === '' ? `_${cleaned}` : cleaned;
}

/** The declared variables whose value is part of the key, sorted. */
export function keyedEnvNames(env: EnvDeclarations): string[] {
  return Object.keys(env)
    .filter((name) => env[name].key)
    .sort();
}

/** The defaults of the keyed variables, which decide the value when the build's environment has none (so they are part of the key too). */
export function keyedEnvDefaults(env: EnvDeclarations): Record<string, string> {
  return Object.fromEntries(keyedEnvNames(env).flatMap((name) => (env[name].default !== undefined ? [[name, env[name].default!]] : [])));
}

/** What the declared variables hold for a build: the build's environment's value, else the default; a variable with neither is left out. */
export function declaredEnvironment(env: EnvDeclarations, hostEnv: NodeJS.ProcessEnv): Record<string, string> {
  const values: Record<string, string> = {};
  for (const [name, declaration] of Object.entries(env)) {
    const value = hostEnv[name] ?? declaration.default;
    if (value !== undefined) values[name] = value;
  }
  return values;
}
