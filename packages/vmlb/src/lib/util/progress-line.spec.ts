import { LOG_PROGRESS_INTERVAL_MS, progressSink } from './progress-line';

/** A clock the test moves by hand. */
function clock() {
  let time = 0;
  return { now: () => time, advance: (ms: number) => (time += ms) };
}

describe('progressSink', () => {
  it('rewrites one line in place on a terminal, and ends it with a newline', () => {
    const written: string[] = [];
    const time = clock();
    const sink = progressSink(() => undefined, { isTTY: true, write: (text: string) => written.push(text) }, time.now);
    sink.update('10 %');
    time.advance(300);
    sink.update('20 %');
    sink.update('21 %');
    sink.finish('100 %');
    expect(written).toEqual(['\r20 %\x1b[K', '\r100 %\x1b[K\n']);
  });

  it('logs a line every interval, not every update, in a log, and always the last one', () => {
    const logged: string[] = [];
    const time = clock();
    const sink = progressSink((line) => logged.push(line), { isTTY: false, write: () => undefined }, time.now);
    for (let percent = 1; percent <= 50; percent++) {
      time.advance(LOG_PROGRESS_INTERVAL_MS / 10);
      sink.update(`${percent} %`);
    }
    sink.finish('100 %');
    expect(logged).toEqual(['10 %', '20 %', '30 %', '40 %', '50 %', '100 %']);
  });
});
