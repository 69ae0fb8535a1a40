#!/usr/bin/env node
import { formatBytes, parseCommandLine, READ_WRITE_TOKENS_ENV, UsageError, USAGE, type CliOptions } from './cli';
import { startCacheServer, type RunningCacheServer } from './server';

const PROGRAM = 'vmlb-cache-server';
const EXIT_USAGE = 2;
const EXIT_FAILURE = 1;
// In-flight transfers get this long after SIGINT/SIGTERM before their
// connections are cut (systemd waits 90 s by default before SIGKILL).
const SHUTDOWN_GRACE_MS = 30_000;

async function main(): Promise<void> {
  let command: ReturnType<typeof parseCommandLine>;
  try {
    command = parseCommandLine(process.argv.slice(2), process.env);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`${PROGRAM}: ${error.message}\nRun ${PROGRAM} --help for usage.\n`);
    process.exitCode = EXIT_USAGE;
    return;
  }
  if (command.kind === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  const server = await startCacheServer({ ...command.options, log: (line) => process.stdout.write(`${line}\n`) });
  process.stdout.write(`${startupLine(server, command.options)}\n`);
  if (!server.authEnabled) {
    process.stderr.write(
      `${PROGRAM}: WARNING: no tokens configured: anyone who can reach ${server.url} can read and write the cache. ` +
        `Set ${READ_WRITE_TOKENS_ENV} to require a token.\n`,
    );
  }
  stopOnSignals(server);
}

function startupLine(server: RunningCacheServer, options: CliOptions): string {
  const auth = server.authEnabled
    ? `auth on (${options.readWriteTokens.length} read-write, ${options.readOnlyTokens.length} read-only tokens)`
    : 'auth OFF (no tokens)';
  return (
    `${PROGRAM}: listening on ${server.url}, ${auth}, ` +
    `storing in ${server.dir} (${server.entryCount} entries), max entry size ${formatBytes(options.maxEntryBytes)}, ` +
    `headers within ${options.headersTimeoutMs / 1000} s, idle connections closed after ${options.idleTimeoutMs / 1000} s, ` +
    `${options.requestTimeoutMs ? `requests within ${options.requestTimeoutMs / 1000} s, ` : ''}at most ${options.maxConnections} connections`
  );
}

/** The first signal stops accepting and lets transfers finish; a second one exits at once. */
function stopOnSignals(server: RunningCacheServer): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      // Unfinished uploads leave files in <dir>/.tmp; the next start removes them.
      process.stderr.write(`${PROGRAM}: ${signal} again, exiting without waiting\n`);
      process.exit(EXIT_FAILURE);
    }
    stopping = true;
    process.stdout.write(`${PROGRAM}: ${signal}: no longer accepting connections, finishing in-flight requests\n`);
    server.close({ graceMs: SHUTDOWN_GRACE_MS }).then(
      () => {
        process.stdout.write(`${PROGRAM}: stopped\n`);
        process.exit(0);
      },
      (error: unknown) => fail(error),
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

function fail(error: unknown): never {
  process.stderr.write(`${PROGRAM}: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(EXIT_FAILURE);
}

main().catch(fail);
