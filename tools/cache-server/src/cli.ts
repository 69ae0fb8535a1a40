import { TokenChecker } from './auth';
import { DEFAULT_HEADERS_TIMEOUT_MS, DEFAULT_HOST, DEFAULT_IDLE_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_ENTRY_BYTES, DEFAULT_PORT } from './server';

export const READ_WRITE_TOKENS_ENV = 'VMLB_CACHE_READ_WRITE_TOKENS';
export const READ_ONLY_TOKENS_ENV = 'VMLB_CACHE_READ_ONLY_TOKENS';

export const USAGE = `Usage: vmlb-cache-server --dir <path> [options]

A remote cache server for Nx (NX_SELF_HOSTED_REMOTE_CACHE_SERVER): stores
task outputs as files under --dir, serves GET/PUT /v1/cache/<hash> and
GET /health.

Options:
  --dir <path>                Where entries are stored (required; created if missing).
  --port <n>                  Port to listen on (default ${DEFAULT_PORT}; 0 picks a free port).
  --host <address>            Address to listen on (default ${DEFAULT_HOST}, this machine only;
                              use 0.0.0.0 to serve a team, ideally behind a TLS proxy).
  --read-write-token <token>  A token that may read and write (repeatable).
  --read-only-token <token>   A token that may only read (repeatable).
  --max-entry-size <size>     Refuse entries larger than this: bytes or 512K, 512M, 2G, 1T
                              (powers of 1024), or unlimited (default 8G).
  --headers-timeout <s>       Seconds a client may take to send a request's headers (default ${DEFAULT_HEADERS_TIMEOUT_MS / 1000}).
  --idle-timeout <s>          Close a connection with no traffic for this many seconds (default ${DEFAULT_IDLE_TIMEOUT_MS / 1000});
                              bodies may take any time as long as they move.
  --request-timeout <s>       Limit on a whole request, body included (default 0: none).
  --max-connections <n>       Connections open at once; more are closed (default ${DEFAULT_MAX_CONNECTIONS}).
  -h, --help                  Show this help.

Tokens (recommended: from the environment, since command lines show up in ps):
  ${READ_WRITE_TOKENS_ENV}=token1,token2
  ${READ_ONLY_TOKENS_ENV}=token3
Tokens from both places are combined. Without any token the server is open:
anyone who can reach it can read and write the cache.

Clients (Nx 24):
  NX_SELF_HOSTED_REMOTE_CACHE_SERVER=http://<host>:<port>
  NX_SELF_HOSTED_REMOTE_CACHE_ACCESS_TOKEN=<token>
`;

export interface CliOptions {
  dir: string;
  host: string;
  port: number;
  readWriteTokens: string[];
  readOnlyTokens: string[];
  maxEntryBytes: number;
  headersTimeoutMs: number;
  idleTimeoutMs: number;
  requestTimeoutMs: number;
  maxConnections: number;
}

export type CliCommand = { kind: 'help' } | { kind: 'serve'; options: CliOptions };

/** A mistake in the command line or environment: reported with exit status 2. */
export class UsageError extends Error {}

const VALUE_OPTIONS = [
  'dir',
  'port',
  'host',
  'read-write-token',
  'read-only-token',
  'max-entry-size',
  'headers-timeout',
  'idle-timeout',
  'request-timeout',
  'max-connections',
] as const;
type ValueOption = (typeof VALUE_OPTIONS)[number];

const SIZE_UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

export function parseCommandLine(argv: readonly string[], env: NodeJS.ProcessEnv): CliCommand {
  if (argv.includes('--help') || argv.includes('-h')) return { kind: 'help' };
  const values = readOptionValues(argv);
  const dir = values.get('dir')?.at(-1);
  if (dir === undefined) throw new UsageError('--dir is required (where to store cache entries)');
  if (dir === '') throw new UsageError('--dir must not be empty');
  const maxEntrySize = values.get('max-entry-size')?.at(-1);
  const readWriteTokens = [...tokensFromEnv(env, READ_WRITE_TOKENS_ENV), ...tokensFromOption(values, 'read-write-token')];
  const readOnlyTokens = [...tokensFromEnv(env, READ_ONLY_TOKENS_ENV), ...tokensFromOption(values, 'read-only-token')];
  assertTokensUsable(readWriteTokens, readOnlyTokens);
  const headersTimeoutMs = parseCount(values, 'headers-timeout', DEFAULT_HEADERS_TIMEOUT_MS / 1000, 1) * 1000;
  const requestTimeoutMs = parseCount(values, 'request-timeout', 0, 0) * 1000;
  if (requestTimeoutMs > 0 && requestTimeoutMs < headersTimeoutMs) {
    throw new UsageError(`--request-timeout (${requestTimeoutMs / 1000}) must be 0 (none) or at least --headers-timeout (${headersTimeoutMs / 1000})`);
  }
  return {
    kind: 'serve',
    options: {
      dir,
      host: parseHost(values.get('host')?.at(-1) ?? DEFAULT_HOST),
      port: parsePort(values.get('port')?.at(-1) ?? String(DEFAULT_PORT)),
      readWriteTokens,
      readOnlyTokens,
      maxEntryBytes:
        maxEntrySize === undefined
          ? DEFAULT_MAX_ENTRY_BYTES
          : maxEntrySize.trim().toLowerCase() === 'unlimited'
            ? Number.POSITIVE_INFINITY
            : parseSize(maxEntrySize, '--max-entry-size'),
      headersTimeoutMs,
      idleTimeoutMs: parseCount(values, 'idle-timeout', DEFAULT_IDLE_TIMEOUT_MS / 1000, 1) * 1000,
      requestTimeoutMs,
      maxConnections: parseCount(values, 'max-connections', DEFAULT_MAX_CONNECTIONS, 1),
    },
  };
}

/** Collects `--name value` and `--name=value` pairs; every value of a repeated option is kept. */
function readOptionValues(argv: readonly string[]): Map<ValueOption, string[]> {
  const values = new Map<ValueOption, string[]>();
  for (let index = 0; index < argv.length; index += 1) {
    const argument = argv[index];
    const match = /^--([^=]+)(?:=(.*))?$/s.exec(argument);
    if (!match) throw new UsageError(`unexpected argument ${JSON.stringify(argument)}`);
    const [, name, inlineValue] = match;
    if (!isValueOption(name)) throw new UsageError(`unknown option --${name}`);
    let value = inlineValue;
    if (value === undefined) {
      value = argv[index + 1];
      // `--dir --port 80` is a forgotten value, not a directory named "--port".
      if (value === undefined || value.startsWith('--')) throw new UsageError(`--${name} needs a value`);
      index += 1;
    }
    values.set(name, [...(values.get(name) ?? []), value]);
  }
  return values;
}

function isValueOption(name: string): name is ValueOption {
  return (VALUE_OPTIONS as readonly string[]).includes(name);
}

export function parsePort(text: string): number {
  const port = /^\d{1,5}$/.test(text) ? Number(text) : Number.NaN;
  if (!(port >= 0 && port <= 65_535)) {
    throw new UsageError(`--port must be a number from 0 to 65535, got ${JSON.stringify(text)}`);
  }
  return port;
}

/** A whole number option (seconds or a count) of at least `minimum`. */
function parseCount(values: Map<ValueOption, string[]>, name: ValueOption, fallback: number, minimum: number): number {
  const text = values.get(name)?.at(-1);
  if (text === undefined) return fallback;
  const value = /^\d{1,9}$/.test(text.trim()) ? Number(text.trim()) : Number.NaN;
  if (!(value >= minimum)) {
    throw new UsageError(`--${name} must be a whole number${minimum > 0 ? ` of at least ${minimum}` : ''}, got ${JSON.stringify(text)}`);
  }
  return value;
}

function parseHost(text: string): string {
  if (text.trim() === '') {
    throw new UsageError(`--host must be an address such as 127.0.0.1 or 0.0.0.0, got ${JSON.stringify(text)}`);
  }
  return text;
}

/** `1048576`, `512K`, `512M`, `2G`, `1T` (case-insensitive, powers of 1024) to bytes. */
export function parseSize(text: string, optionName: string): number {
  const match = /^(\d+)([KMGT]?)$/i.exec(text.trim());
  const bytes = match ? Number(match[1]) * SIZE_UNITS[match[2].toUpperCase()] : Number.NaN;
  if (!(bytes > 0 && Number.isSafeInteger(bytes))) {
    throw new UsageError(`${optionName} must be a positive size such as 1048576, 512M or 2G, got ${JSON.stringify(text)}`);
  }
  return bytes;
}

function tokensFromEnv(env: NodeJS.ProcessEnv, name: string): string[] {
  return (env[name] ?? '')
    .split(',')
    .map((token) => token.trim())
    .filter((token) => token !== '');
}

function tokensFromOption(values: Map<ValueOption, string[]>, name: ValueOption): string[] {
  const tokens = values.get(name) ?? [];
  // The value is a secret: name the option, never the token.
  if (tokens.some((token) => token.trim() === '')) throw new UsageError(`--${name} must not be empty`);
  return tokens;
}

function assertTokensUsable(readWriteTokens: string[], readOnlyTokens: string[]): void {
  try {
    new TokenChecker(readWriteTokens, readOnlyTokens);
  } catch (error) {
    const sources = `--read-write-token/--read-only-token or ${READ_WRITE_TOKENS_ENV}/${READ_ONLY_TOKENS_ENV}`;
    throw new UsageError(`${(error as Error).message} (from ${sources})`);
  }
}

export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return 'unlimited';
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${Number.isInteger(value) ? value : value.toFixed(1)} ${units[unit]}`;
}
