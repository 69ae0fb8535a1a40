import { performance } from 'node:perf_hooks';
import { BUILD_PHASES, PHASE_MARK_PREFIX, pausePhase, pausePoint } from './pause-point';

describe('pausePhase', () => {
  it('is undefined unless VMLB_PAUSE_AT is set', () => {
    expect(pausePhase({})).toBeUndefined();
    expect(pausePhase({ VMLB_PAUSE_AT: '' })).toBeUndefined();
  });

  it('returns a known phase, or failed', () => {
    expect(pausePhase({ VMLB_PAUSE_AT: 'mounted' })).toBe('mounted');
    expect(pausePhase({ VMLB_PAUSE_AT: 'failed' })).toBe('failed');
  });

  it('refuses an unknown phase, listing the phases in order', () => {
    expect(() => pausePhase({ VMLB_PAUSE_AT: 'mountd' })).toThrow(
      `VMLB_PAUSE_AT=mountd is not a build phase. Phases, in order: ${BUILD_PHASES.join(', ')}. Or failed: keep a layer whose script fails`,
    );
  });
});

describe('pausePoint', () => {
  const saved = process.env.VMLB_PAUSE_AT;
  afterEach(() => {
    if (saved === undefined) delete process.env.VMLB_PAUSE_AT;
    else process.env.VMLB_PAUSE_AT = saved;
  });

  it('returns at once at other phases, and without a signal', async () => {
    process.env.VMLB_PAUSE_AT = 'mounted';
    const log = jest.fn();
    await pausePoint('teardown', new AbortController().signal, log);
    await pausePoint('mounted', undefined, log);
    expect(log).not.toHaveBeenCalled();
  });

  it('marks each phase it passes on the performance timeline, in order, paused or not', async () => {
    delete process.env.VMLB_PAUSE_AT;
    performance.clearMarks();
    const before = performance.now();
    await pausePoint('overlay-created', new AbortController().signal, jest.fn());
    await pausePoint('mounted', undefined, jest.fn());
    const marks = performance.getEntriesByType('mark').filter((mark) => mark.name.startsWith(PHASE_MARK_PREFIX));
    expect(marks.map((mark) => mark.name)).toEqual(['vmlb:overlay-created', 'vmlb:mounted']);
    expect(marks[0].startTime).toBeGreaterThanOrEqual(before);
    expect(marks[1].startTime).toBeGreaterThanOrEqual(marks[0].startTime);
  });

  it('waits at its phase, saying so, until the build is interrupted', async () => {
    process.env.VMLB_PAUSE_AT = 'mounted';
    const controller = new AbortController();
    const log = jest.fn();
    let returned = false;
    const paused = pausePoint('mounted', controller.signal, log).then(() => (returned = true));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(returned).toBe(false);
    expect(log).toHaveBeenCalledWith(expect.stringContaining('vmlb: paused at mounted (VMLB_PAUSE_AT; pid'));
    controller.abort();
    await paused;
    expect(returned).toBe(true);
  });
});
