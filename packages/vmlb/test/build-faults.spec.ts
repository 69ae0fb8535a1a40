import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { chainDigest } from '../src/lib/cache-identity/digest';
import { BUILD_PHASES } from '../src/lib/util/pause-point';
import { readFilesFromImage } from './support/disk-read';
import { describeLeftovers, findLeftovers, releaseHostLeftovers, waitForCleanHost, waitForProcessGroupExit } from './support/host-state';
import { NxWorkspace, nxEnvironment } from './support/nx-workspace';
import { tearDownHost } from './support/host-teardown';

// Fault injection: a layer build is stopped with SIGINT, SIGTERM and
// SIGKILL at every phase of its life, and each time the host must end up
// clean (no mount, loop device, daemon, watcher, partial file or work
// folder), no layer may be left half-written or lose its match with its
// digest, and the next build must succeed and be correct. Phases are
// reached with VMLB_PAUSE_AT (the build stops there and waits) or, while
// the script runs, by the script itself. Real qemu, FUSE, loop devices,
// mounts and chroots on a copy of images/tiny; nothing is mocked.
//
// The builds run the compiled layer executor directly (as Nx's task
// process does), without Nx's start-up in front of each of the ~70 builds;
// layer-failures.spec.ts stops builds through `nx` itself.

const IMAGE = 'tiny';
const LAYER = '30_x';
const MARKER = 'vmlb-fault-test: the script is running';

type Signal = 'SIGINT' | 'SIGTERM' | 'SIGKILL';
interface FaultPoint {
  phase: string;
  /** Set: the script (written for this point) prints MARKER when it gets there; unset: VMLB_PAUSE_AT=phase. */
  script?: string;
}

const scriptPoints: Record<string, FaultPoint> = {
  'script-running': { phase: 'script-running', script: `#!/bin/sh\necho '${MARKER}'\nsleep 600\n` },
  'script-writing': {
    phase: 'script-writing',
    // Killed in the middle of writing: the writes never stop.
    script: `#!/bin/sh\necho '${MARKER}'\nwhile :; do dd if=/dev/urandom of=/big bs=1M count=8 2>/dev/null; done\n`,
  },
};
/** In build order: the pause points, with the script's own two phases where the script runs. */
const POINTS: FaultPoint[] = BUILD_PHASES.flatMap((phase) =>
  phase === 'script-finished' ? [scriptPoints['script-running'], scriptPoints['script-writing'], { phase }] : [{ phase }],
);
const SIGNALS: Signal[] = ['SIGINT', 'SIGTERM', 'SIGKILL'];

const passingScript = (label: string) => `#!/bin/sh\nset -eu\necho '${label}' > /etc/fault-test\n`;

interface Outcome {
  phase: string;
  signal: Signal;
  cleanAfterExit: boolean;
  nextBuildCorrect: boolean;
}

describe('a layer build stopped at every phase', () => {
  let workspace: NxWorkspace;
  let buildOptions: Record<string, unknown>;
  let running: ChildProcess | undefined;
  const outcomes: Outcome[] = [];
  let builds = 0;

  const dist = (...parts: string[]) => workspace.path('dist/images', IMAGE, ...parts);
  const leftoverOptions = () => ({ distDir: workspace.path('dist') });

  function writeScript(text: string): void {
    mkdirSync(workspace.path('images', IMAGE, LAYER), { recursive: true });
    writeFileSync(workspace.path('images', IMAGE, LAYER, 'build-layer'), text, { mode: 0o755 });
  }

  /** Starts the layer's build in a process group of its own; resolves with its output once it is at the point. */
  function startBuild(env: Record<string, string>): {
    child: ChildProcess;
    output: () => string;
    exited: Promise<{ code: number | null; signal: string | null }>;
  } {
    builds++;
    const child = spawn(process.execPath, [path.join(__dirname, 'support/run-layer-executor.js'), JSON.stringify(buildOptions), `${IMAGE}-${LAYER}`], {
      cwd: workspace.root,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...nxEnvironment(env) } as NodeJS.ProcessEnv,
    });
    running = child;
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    return { child, output: () => output, exited };
  }

  async function waitFor(text: string, build: ReturnType<typeof startBuild>, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let ended = false;
    void build.exited.then(() => (ended = true));
    while (!build.output().includes(text)) {
      if (ended || Date.now() > deadline) throw new Error(`the build ${ended ? 'ended' : 'did not print'} before "${text}":\n${build.output()}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async function buildToEnd(label: string): Promise<string> {
    writeScript(passingScript(label));
    const build = startBuild({});
    const { code } = await build.exited;
    running = undefined;
    if (code !== 0) throw new Error(`the build after the fault failed (${code}):\n${build.output()}`);
    return build.output();
  }

  /** sha256 of each lower layer's qcow2 and digest: a fault in 30_x must not touch them. */
  function lowerLayers(): Record<string, string> {
    const files = readdirSync(dist()).filter((name) => /^(base|\d\d_(?!x)\w+)\.(qcow2|digest)$/.test(name) && !name.startsWith(LAYER));
    return Object.fromEntries(
      files.sort().map((name) => [
        name,
        createHash('sha256')
          .update(readFileSync(dist(name)))
          .digest('hex'),
      ]),
    );
  }

  /** Every digest file in the image folder matches the chain it names; no .partial file exists. */
  async function checkDist(): Promise<void> {
    const names = readdirSync(dist());
    expect(names.filter((name) => name.endsWith('.partial'))).toEqual([]);
    const parentOf: Record<string, string> = { '00_disk': 'base', '10_hello': '00_disk', '20_motd': '10_hello', [LAYER]: '20_motd' };
    for (const [layer, parent] of Object.entries(parentOf)) {
      if (!existsSync(dist(`${layer}.digest`))) continue;
      const recorded = readFileSync(dist(`${layer}.digest`), 'utf8').trim();
      const parentDigest = readFileSync(dist(`${parent}.digest`), 'utf8').trim();
      expect(`${layer}: ${await chainDigest(parentDigest, dist(`${layer}.qcow2`))}`).toBe(`${layer}: ${recorded}`);
    }
  }

  beforeAll(async () => {
    workspace = new NxWorkspace({ images: [IMAGE] });
    writeScript(passingScript('first'));
    await workspace.nxOk(['build', `image-${IMAGE}`]);
    const project = JSON.parse(await workspace.nxOk(['show', 'project', `${IMAGE}-${LAYER}`, '--json']));
    buildOptions = project.targets.build.options;
  }, 300_000);

  afterEach(async () => {
    const pid = running?.exitCode === null ? running.pid : undefined;
    running = undefined;
    await tearDownHost(workspace, { processGroups: [pid], leftovers: leftoverOptions() });
  }, 60_000);

  afterAll(async () => {
    if (!workspace) return;
    const table = outcomes.map(
      (outcome) =>
        `  ${outcome.phase.padEnd(16)} ${outcome.signal.padEnd(8)} host clean once gone: ${outcome.cleanAfterExit ? 'yes' : 'NO'}; next build correct: ${outcome.nextBuildCorrect ? 'yes' : 'NO'}`,
    );
    const clean = outcomes.filter((outcome) => outcome.cleanAfterExit).length;
    const correct = outcomes.filter((outcome) => outcome.nextBuildCorrect).length;
    console.log(
      `fault injection: ${outcomes.length} builds stopped at ${new Set(outcomes.map((o) => o.phase)).size} phases (${builds} builds in all); ` +
        `host clean once the build was gone: ${clean}/${outcomes.length}; next build succeeded and was correct: ${correct}/${outcomes.length}\n${table.join('\n')}`,
    );
    await releaseHostLeftovers(workspace.root, leftoverOptions());
    workspace.remove();
  }, 60_000);

  it('has at least ten points to stop at, in build order', () => {
    expect(POINTS.map((point) => point.phase)).toEqual([
      'overlay-created',
      'daemon-started',
      'loop-attached',
      'mounted',
      'script-running',
      'script-writing',
      'script-finished',
      'teardown',
      'detached',
      'before-rename',
      'renamed',
    ]);
  });

  const cases = POINTS.flatMap((point) => SIGNALS.map((signal) => [point.phase, signal, point] as const));
  it.each(cases)(
    'at %s, %s: nothing is left once the build is gone, and the next build is correct',
    async (phase, signal, point) => {
      const outcome: Outcome = { phase, signal, cleanAfterExit: false, nextBuildCorrect: false };
      outcomes.push(outcome);
      const lowerBefore = lowerLayers();
      const digestBefore = readFileSync(dist(`${LAYER}.digest`), 'utf8');

      writeScript(point.script ?? passingScript(`stopped at ${phase}`));
      const build = startBuild(point.script ? {} : { VMLB_PAUSE_AT: phase });
      await waitFor(point.script ? MARKER : `vmlb: paused at ${phase}`, build, 60_000);
      process.kill(-build.child.pid!, signal);
      const ended = await build.exited;
      expect(await waitForProcessGroupExit(build.child.pid!, 30_000)).toBe(true);
      running = undefined;

      expect(ended.code === 0).toBe(false);
      if (signal === 'SIGKILL') {
        // Only the watcher, in a session of its own, can clean up now.
        expect(await waitForCleanHost(workspace.root, leftoverOptions(), 20_000)).toBe('');
      } else {
        // The build released everything itself before it exited.
        expect(describeLeftovers(await findLeftovers(workspace.root, leftoverOptions()))).toBe('');
        expect(build.output()).toContain(`Build of layer ${LAYER} of image ${IMAGE} was interrupted.`);
      }
      // The layer is the one from before (an interrupted build replaces nothing), or, once renamed into
      // place, gone: never a qcow2 without its digest, never a new one.
      const digestAfter = existsSync(dist(`${LAYER}.digest`)) ? readFileSync(dist(`${LAYER}.digest`), 'utf8') : undefined;
      expect(digestAfter === undefined || digestAfter === digestBefore).toBe(true);
      expect(existsSync(dist(`${LAYER}.qcow2`))).toBe(digestAfter !== undefined);
      await checkDist();
      expect(lowerLayers()).toEqual(lowerBefore);
      outcome.cleanAfterExit = true;

      const label = `built after ${signal} at ${phase}`;
      const output = await buildToEnd(label);
      expect(output).toContain(`vmlb: layer ${LAYER} built`);
      // The stopped build (or its watcher) left nothing for this one to clean.
      expect(output).not.toContain('cleaned up after an interrupted build');
      await checkDist();
      expect(existsSync(dist(`${LAYER}.digest`))).toBe(true);
      expect(await readFilesFromImage(dist(`${LAYER}.qcow2`), ['/etc/fault-test'])).toEqual({ '/etc/fault-test': label });
      expect(describeLeftovers(await findLeftovers(workspace.root, leftoverOptions()))).toBe('');
      expect(lowerLayers()).toEqual(lowerBefore);
      outcome.nextBuildCorrect = true;
    },
    180_000,
  );

  it('refuses a VMLB_PAUSE_AT that names no phase, listing the phases', async () => {
    writeScript(passingScript('never'));
    const build = startBuild({ VMLB_PAUSE_AT: 'mountd' });
    const { code } = await build.exited;
    running = undefined;
    expect(code).not.toBe(0);
    expect(build.output()).toContain(`VMLB_PAUSE_AT=mountd is not a build phase. Phases, in order: ${BUILD_PHASES.join(', ')}.`);
    expect(describeLeftovers(await findLeftovers(workspace.root, leftoverOptions()))).toBe('');
  }, 60_000);
});
