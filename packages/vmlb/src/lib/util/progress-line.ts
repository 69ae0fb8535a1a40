import type { Log } from './log';

/** Where a long step reports its progress: `update` as often as it likes, `finish` once. */
export interface ProgressSink {
  update(line: string): void;
  finish(line: string): void;
}

/** How often a log (not a terminal) gets a progress line: often enough to show life, rarely enough to stay readable. */
export const LOG_PROGRESS_INTERVAL_MS = 10_000;
/** How often the terminal's line is redrawn. */
const TERMINAL_REDRAW_MS = 250;

/**
 * On a terminal, one line rewritten in place; in a log (CI, a file, Nx's
 * captured output), a line every LOG_PROGRESS_INTERVAL_MS and the last one.
 */
export function progressSink(log: Log, stream: { isTTY?: boolean; write(text: string): unknown } = process.stdout, now: () => number = Date.now): ProgressSink {
  let last = now();
  if (stream.isTTY) {
    return {
      update(line) {
        if (now() - last < TERMINAL_REDRAW_MS) return;
        last = now();
        stream.write(`\r${line}\x1b[K`);
      },
      finish(line) {
        stream.write(`\r${line}\x1b[K\n`);
      },
    };
  }
  return {
    update(line) {
      if (now() - last < LOG_PROGRESS_INTERVAL_MS) return;
      last = now();
      log(line);
    },
    finish: log,
  };
}
