/**
 * Disk sizes as users write them (`4G`, `512M`, `20GiB`, `1073741824`) and
 * as qemu-img prints them. Binary multiples throughout: qemu-img treats
 * `4G` as 4 GiB, and so do we, so a size means the same thing in image.json,
 * in a `# disk-size` hint and on the qemu-img command line.
 */
const MULTIPLIERS: Record<string, number> = {
  '': 1,
  B: 1,
  K: 1024,
  M: 1024 ** 2,
  G: 1024 ** 3,
  T: 1024 ** 4,
};

const SIZE_PATTERN = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$/i;

/** Parses a size such as `4G` into bytes; returns undefined when it is not one. */
export function parseSize(text: string | number): number | undefined {
  if (typeof text === 'number') {
    return Number.isSafeInteger(text) && text > 0 ? text : undefined;
  }
  const match = SIZE_PATTERN.exec(text);
  if (!match) return undefined;
  const bytes = Number(match[1]) * MULTIPLIERS[match[2].toUpperCase()];
  if (!Number.isFinite(bytes) || bytes <= 0) return undefined;
  // qemu-img rounds to whole sectors; do the same so sizes compare exactly.
  return Math.ceil(bytes / 512) * 512;
}

/** Formats bytes for people: `1.5 GiB`, `300 MiB`, `12 KiB`, `512 B`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const digits = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${value.toFixed(digits).replace(/\.0+$|(\.\d*?)0+$/, '$1')} ${units[unit]}`;
}

/** Formats a duration in milliseconds as `850 ms`, `12.3 s` or `4 min 05 s`. */
export function formatDuration(milliseconds: number): string {
  if (milliseconds < 1000) return `${Math.round(milliseconds)} ms`;
  const seconds = milliseconds / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${String(Math.round(seconds % 60)).padStart(2, '0')} s`;
}
