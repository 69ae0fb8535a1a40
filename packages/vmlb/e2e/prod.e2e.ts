import { appendFileSync, writeFileSync } from 'node:fs';
import { NxWorkspace, cacheHits, tasksRun } from '../test/support/nx-workspace';

/**
 * The flagship image end to end: images/prod built from an empty disk,
 * booted under qemu with cloud-init and checked over ssh; then the
 * everyday change (one line of the app's page) rebuilt and booted again.
 * Timings are printed for docs/benchmarks.md.
 */
describe('images/prod', () => {
  const workspace = new NxWorkspace({ images: ['prod'] });
  afterAll(() => workspace.remove());
  const timed = async <T>(label: string, work: () => Promise<T>): Promise<T> => {
    const started = Date.now();
    const result = await work();
    const line = `${label}: ${((Date.now() - started) / 1000).toFixed(1)} s`;
    console.log(line);
    appendFileSync(workspace.path('timings.txt'), `${line}\n`);
    return result;
  };
  const check = ['run', 'image-prod:test-boot', '--check', '--ssh=systemctl is-system-running --wait; curl -fsS localhost'];

  it('builds from scratch, boots, and serves the page over ssh', async () => {
    const build = await timed('full build', () => workspace.nxOk(['build', 'image-prod'], { timeoutMs: 3_000_000 }));
    expect(tasksRun(build)).toEqual(
      ['image-prod:base', 'image-prod:build', ...['00_base', '10_update', '20_packages', '30_app', '40_resize', '50_cleanup'].map((layer) => `prod-${layer}:build`)].sort(),
    );
    const boot = await timed('boot check with ssh', () => workspace.nxOk(check, { timeoutMs: 1_200_000 }));
    expect(boot).toContain('Hello from prod, built by vmlb');
    expect(boot).toMatch(/image prod booted: \/login:\/ appeared after .* and the ssh command passed/);
  });

  it('rebuilds only 30_app and the layers above after a one-line edit, and boots with the new page', async () => {
    writeFileSync(workspace.path('images/prod/30_app/index.html'), '<!doctype html><title>prod</title><h1>Edited page, rebuilt by vmlb</h1>\n');
    const build = await timed('incremental build (30_app edited)', () => workspace.nxOk(['build', 'image-prod'], { timeoutMs: 1_200_000 }));
    expect(cacheHits(build)).toEqual(['image-prod:base', 'prod-00_base:build', 'prod-10_update:build', 'prod-20_packages:build']);
    expect(tasksRun(build)).toEqual(['image-prod:build', 'prod-30_app:build', 'prod-40_resize:build', 'prod-50_cleanup:build']);
    const boot = await timed('boot check with ssh after the edit', () => workspace.nxOk(check, { timeoutMs: 1_200_000 }));
    expect(boot).toContain('Edited page, rebuilt by vmlb');
  });
});
