import { formatBytes, formatDuration, parseSize } from './units';

describe('parseSize', () => {
  it.each([
    ['4G', 4 * 1024 ** 3],
    ['4g', 4 * 1024 ** 3],
    ['4GiB', 4 * 1024 ** 3],
    ['512M', 512 * 1024 ** 2],
    ['1.5G', 1.5 * 1024 ** 3],
    ['64K', 64 * 1024],
    ['1T', 1024 ** 4],
    ['1048576', 1048576],
    [' 20G ', 20 * 1024 ** 3],
  ])('reads %p as %p bytes', (text, bytes) => {
    expect(parseSize(text)).toBe(bytes);
  });

  it('rounds up to whole 512-byte sectors as qemu-img does', () => {
    expect(parseSize('1000')).toBe(1024);
  });

  it('accepts positive whole numbers of bytes', () => {
    expect(parseSize(4096)).toBe(4096);
    expect(parseSize(0)).toBeUndefined();
    expect(parseSize(1.5)).toBeUndefined();
  });

  it.each(['', 'big', '4X', '-1G', '0', '4 G B', 'G'])('rejects %p', (text) => {
    expect(parseSize(text)).toBeUndefined();
  });
});

describe('formatBytes', () => {
  it.each([
    [0, '0 B'],
    [512, '512 B'],
    [1536, '1.5 KiB'],
    [300 * 1024 ** 2, '300 MiB'],
    [4 * 1024 ** 3, '4 GiB'],
    [12.25 * 1024 ** 3, '12.3 GiB'],
  ])('formats %p as %p', (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});

describe('formatDuration', () => {
  it('uses ms, s and min as the value grows', () => {
    expect(formatDuration(850)).toBe('850 ms');
    expect(formatDuration(12_340)).toBe('12.3 s');
    expect(formatDuration(245_000)).toBe('4 min 05 s');
  });
});
