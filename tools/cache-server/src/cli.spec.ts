import { formatBytes, parseCommandLine, parseSize, UsageError, type CliOptions } from './cli';

describe('parseCommandLine', () => {
  const serve = (argv: string[], env: NodeJS.ProcessEnv = {}): CliOptions => {
    const command = parseCommandLine(argv, env);
    if (command.kind !== 'serve') throw new Error(`expected serve, got ${command.kind}`);
    return command.options;
  };

  it('defaults to 127.0.0.1:3000, no tokens, 8 GiB entries at most, 60 s for headers, 120 s idle, no total limit, 256 connections', () => {
    expect(serve(['--dir', '/srv/cache'])).toEqual({
      dir: '/srv/cache',
      host: '127.0.0.1',
      port: 3000,
      readWriteTokens: [],
      readOnlyTokens: [],
      maxEntryBytes: 8 * 1024 ** 3,
      headersTimeoutMs: 60_000,
      idleTimeoutMs: 120_000,
      requestTimeoutMs: 0,
      maxConnections: 256,
    });
  });

  it('reads the timeouts in seconds, the connection limit, and an unlimited entry size', () => {
    expect(
      serve([
        '--dir',
        '/srv/cache',
        '--headers-timeout',
        '10',
        '--idle-timeout=30',
        '--request-timeout',
        '3600',
        '--max-connections',
        '64',
        '--max-entry-size',
        'unlimited',
      ]),
    ).toMatchObject({
      headersTimeoutMs: 10_000,
      idleTimeoutMs: 30_000,
      requestTimeoutMs: 3_600_000,
      maxConnections: 64,
      maxEntryBytes: Number.POSITIVE_INFINITY,
    });
  });

  it.each([
    [['--headers-timeout', '0'], '--headers-timeout must be a whole number of at least 1, got "0"'],
    [['--max-connections', '-1'], '--max-connections must be a whole number of at least 1, got "-1"'],
    [['--idle-timeout', '1.5'], '--idle-timeout must be a whole number of at least 1, got "1.5"'],
    [['--request-timeout', '5'], '--request-timeout (5) must be 0 (none) or at least --headers-timeout (60)'],
  ])('rejects %j', (argv, message) => {
    expect(() => serve(['--dir', '/srv/cache', ...argv])).toThrow(new UsageError(message));
  });

  it('reads `--name value` and `--name=value`', () => {
    expect(serve(['--dir=/srv/cache', '--host', '0.0.0.0', '--port=0', '--max-entry-size', '2G'])).toMatchObject({
      dir: '/srv/cache',
      host: '0.0.0.0',
      port: 0,
      maxEntryBytes: 2 * 1024 ** 3,
    });
  });

  it('combines repeated token options with the comma-separated environment variables', () => {
    const options = serve(['--dir', 'd', '--read-write-token', 'cli-rw', '--read-only-token=cli-ro', '--read-only-token', 'cli-ro2'], {
      VMLB_CACHE_READ_WRITE_TOKENS: ' env-rw1, env-rw2 ,,',
      VMLB_CACHE_READ_ONLY_TOKENS: 'env-ro',
    });
    expect(options.readWriteTokens).toEqual(['env-rw1', 'env-rw2', 'cli-rw']);
    expect(options.readOnlyTokens).toEqual(['env-ro', 'cli-ro', 'cli-ro2']);
  });

  it('asks for help with --help or -h, whatever else is given', () => {
    expect(parseCommandLine(['--help'], {})).toEqual({ kind: 'help' });
    expect(parseCommandLine(['--port', 'nonsense', '-h'], {})).toEqual({ kind: 'help' });
  });

  it.each([
    [['--port', '1'], /--dir is required/],
    [['--dir'], /--dir needs a value/],
    [['--dir', '--port', '80'], /--dir needs a value/],
    [['--dir='], /--dir must not be empty/],
    [['--dir', 'd', '--port', 'abc'], /--port must be a number from 0 to 65535, got "abc"/],
    [['--dir', 'd', '--port', '65536'], /--port .* got "65536"/],
    [['--dir', 'd', '--port', '-1'], /--port .* got "-1"/],
    [['--dir', 'd', '--host', ''], /--host .* got ""/],
    [['--dir', 'd', '--max-entry-size', '12X'], /--max-entry-size must be a positive size .* got "12X"/],
    [['--dir', 'd', '--max-entry-size', '0'], /--max-entry-size .* got "0"/],
    [['--dir', 'd', '--verbose'], /unknown option --verbose/],
    [['--dir', 'd', 'serve'], /unexpected argument "serve"/],
    [['--dir', 'd', '--read-write-token='], /--read-write-token must not be empty/],
  ])('rejects %j: %s', (argv, message) => {
    expect(() => parseCommandLine(argv, {})).toThrow(UsageError);
    expect(() => parseCommandLine(argv, {})).toThrow(message);
  });

  it('rejects an unusable token without repeating it', () => {
    const attempt = () => parseCommandLine(['--dir', 'd'], { VMLB_CACHE_READ_ONLY_TOKENS: 'fine,not fine' });
    expect(attempt).toThrow(UsageError);
    expect(attempt).toThrow(/read-only token #2/);
    expect(attempt).not.toThrow(/not fine/);
  });
});

describe('parseSize', () => {
  it.each([
    ['1', 1],
    ['1048576', 1024 ** 2],
    ['512K', 512 * 1024],
    ['512M', 512 * 1024 ** 2],
    ['512m', 512 * 1024 ** 2],
    ['2G', 2 * 1024 ** 3],
    ['1T', 1024 ** 4],
  ])('reads %s as %d bytes', (text, bytes) => {
    expect(parseSize(text, '--max-entry-size')).toBe(bytes);
  });

  it.each(['', '0', '-1', '1.5G', '2GB', 'G', '1 G x', '99999999999999999999'])('rejects %j', (text) => {
    expect(() => parseSize(text, '--max-entry-size')).toThrow(`got ${JSON.stringify(text)}`);
  });
});

describe('formatBytes', () => {
  it.each([
    [Number.POSITIVE_INFINITY, 'unlimited'],
    [512, '512 bytes'],
    [512 * 1024 ** 2, '512 MiB'],
    [1.5 * 1024 ** 3, '1.5 GiB'],
  ])('formats %d as %s', (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});
