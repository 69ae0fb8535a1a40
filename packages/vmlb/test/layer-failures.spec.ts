import { appendFileSync, chmodSync, closeSync, cpSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { execa } from 'execa';
import {
  type LeftoverOptions,
  describeLeftovers,
  findLeftovers,
  leftoverWatchersUnder,
  mountsUnder,
  processGroupMembers,
  releaseHostLeftovers,
  waitForCleanHost,
  waitForProcessGroupExit,
  watchLoops,
} from './support/host-state';
import { type NxRun, type RunningNx, NxWorkspace, REPO_ROOT, cacheHits, startNx, tasksRun } from './support/nx-workspace';
import { killProcessGroups, tearDownHost } from './support/host-teardown';

// A layer build that fails, or is interrupted, must say clearly what went
// wrong and leave nothing on the host: no mount, loop device, storage daemon,
// partial overlay or work folder, and no output for the failed layer. Real
// nx, qemu-img, qemu-storage-daemon FUSE exports, loop devices, mounts and
// chroots on a copy of images/tiny; nothing is mocked. One workspace serves
// every case: the lower layers come from the Nx cache after the first build.

const IMAGE_DIST = 'dist/images/tiny';
/** Printed by the test scripts once they run inside the chroot (or on the host, for modify-disk). */
const MARKER = 'vmlb-test: the layer script is running';

const sleepingScript = `#!/bin/sh\necho '${MARKER}'\nsleep 600\n`;
/** A script that succeeds; `label` makes its content (so its Nx hash) unique. */
const passingScript = (label: string) => `#!/bin/sh\nset -eu\necho 'built ${label}' > /etc/vmlb-test\n`;

async function withTimeout<T>(promise: Promise<T>, milliseconds: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not happen within ${milliseconds} ms`)), milliseconds);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Task ids nx lists under "Failed tasks:" at the end of a run. */
function failedTasks(output: string): string[] {
  const section = /Failed tasks:\s*\n((?:\s*- \S+[ \t]*\n?)+)/.exec(output);
  return section ? [...section[1].matchAll(/- (\S+)/g)].map((match) => match[1]).sort() : [];
}

/** The list after "cleaned up after an interrupted build of <layer>:" in a run's output. */
function cleanupReport(output: string, layer: string): string | undefined {
  return new RegExp(`cleaned up after an interrupted build of ${layer}: (.*)`).exec(output)?.[1];
}

describe('a failing or interrupted layer build', () => {
  let workspace: NxWorkspace;
  /** Background nx runs, killed (by process group) if a test leaves one running. */
  const started: RunningNx[] = [];
  /** Loop devices a test saw left behind; checked (and released) even once their backing file is gone. */
  let suspectLoops: string[] = [];

  const dist = (...parts: string[]) => workspace.path(IMAGE_DIST, ...parts);
  const layerScript = (layer: string, kind = 'build-layer') => workspace.path('images/tiny', layer, kind);

  /** `nx <args>` with each task's output printed in full (failed or not, cached or not). */
  const nx = (args: string[]) => workspace.nx([...args, '--output-style=static']);
  const start = (args: string[]) => {
    const running = startNx(workspace, [...args, '--output-style=stream']);
    started.push(running);
    return running;
  };

  function expectSuccess(run: NxRun): void {
    if (run.exitCode !== 0) throw new Error(`nx exited with ${run.exitCode}; expected success:\n${run.output}`);
  }

  /** Adds (or replaces) a layer folder holding one build-layer script. */
  function writeLayer(layer: string, script: string, mode = 0o755): void {
    mkdirSync(workspace.path('images/tiny', layer), { recursive: true });
    writeFileSync(layerScript(layer), script);
    chmodSync(layerScript(layer), mode);
  }

  /** SIGKILLs the leftover watchers of builds in this workspace, so a test can see what a build killed with them leaves. */
  function killWatchers(): void {
    const watchers = leftoverWatchersUnder(workspace.root);
    expect(watchers).toHaveLength(1);
    for (const pid of watchers) process.kill(pid, 'SIGKILL');
  }

  async function expectHostClean(options: LeftoverOptions = {}): Promise<void> {
    const leftovers = await findLeftovers(workspace.root, { distDir: workspace.path('dist'), suspectLoops, ...options });
    expect(describeLeftovers(leftovers)).toBe('');
  }

  function expectNoLayerOutput(layer: string): void {
    expect([dist(`${layer}.qcow2`), dist(`${layer}.digest`)].filter((file) => existsSync(file))).toEqual([]);
  }

  /** Deletes a layer's output, so that "absent" afterwards shows a failed build wrote none. */
  function removeLayerOutput(layer: string): void {
    rmSync(dist(`${layer}.qcow2`), { force: true });
    rmSync(dist(`${layer}.digest`), { force: true });
  }

  function restoreImages(): void {
    rmSync(workspace.path('images/tiny'), { recursive: true, force: true });
    cpSync(path.join(REPO_ROOT, 'images/tiny'), workspace.path('images/tiny'), { recursive: true });
  }

  /** Deletes the image's outputs; refuses while anything is mounted in them (rm would recurse into it). */
  function removeImageDist(): void {
    const mounted = mountsUnder(dist());
    if (mounted.length) throw new Error(`not deleting ${dist()}: still mounted: ${mounted.map((mount) => mount.mountPoint).join(', ')}`);
    rmSync(dist(), { recursive: true, force: true });
  }

  /** Deletes the outputs and builds the image again: every layer comes back from the Nx cache. */
  async function restoreDist(): Promise<void> {
    restoreImages();
    removeImageDist();
    const run = await nx(['build', 'image-tiny']);
    if (run.exitCode !== 0) console.warn(`restoring ${IMAGE_DIST} failed:\n${run.output}`);
  }

  /** Overwrites the first bytes of a file with zeros, in place. */
  function zeroHead(file: string, bytes: number): void {
    const fd = openSync(file, 'r+');
    try {
      writeSync(fd, Buffer.alloc(bytes), 0, bytes, 0);
    } finally {
      closeSync(fd);
    }
  }

  async function mountTmpfs(mountPoint: string, size: string): Promise<void> {
    mkdirSync(mountPoint, { recursive: true });
    await execa('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'vmlb-test-full', mountPoint]);
  }

  async function unmountTmpfs(mountPoint: string): Promise<void> {
    if (!mountsUnder(mountPoint).some((mount) => mount.mountPoint === mountPoint)) return;
    const result = await execa('umount', [mountPoint], { reject: false });
    if (result.exitCode !== 0) await execa('umount', ['--lazy', mountPoint], { reject: false });
  }

  /** Sends a signal to a background nx's whole process group and waits until every process of the group is gone. */
  async function signalAndWait(running: RunningNx, signal: NodeJS.Signals) {
    process.kill(-running.pid, signal);
    const ended = await withTimeout(running.exited, 60_000, `nx exiting after ${signal}`);
    expect(await waitForProcessGroupExit(running.pid, 60_000)).toBe(true);
    return ended;
  }

  beforeAll(async () => {
    workspace = new NxWorkspace({ images: ['tiny'] });
    expectSuccess(await nx(['build', 'image-tiny']));
  }, 180_000);

  afterEach(async () => {
    // A failed test must not leave the host dirty, nor fail the tests after it.
    await killProcessGroups(started.splice(0).map((running) => running.pid));
    await unmountTmpfs(dist());
    await tearDownHost(workspace, { leftovers: { distDir: workspace.path('dist'), suspectLoops } });
    suspectLoops = [];
    restoreImages();
    // Layers the tests added do not belong to the next test.
    for (const layer of ['30_x', '30_fail']) removeLayerOutput(layer);
  }, 60_000);

  afterAll(async () => {
    if (!workspace) return;
    for (const running of started.splice(0)) {
      if (processGroupMembers(running.pid).length > 0) process.kill(-running.pid, 'SIGKILL');
    }
    await unmountTmpfs(workspace.path(IMAGE_DIST));
    await releaseHostLeftovers(workspace.root, { distDir: workspace.path('dist'), suspectLoops });
    const mounted = mountsUnder(workspace.root);
    if (mounted.length) {
      throw new Error(`not removing ${workspace.root}: still mounted: ${mounted.map((mount) => mount.mountPoint).join(', ')}`);
    }
    workspace.remove();
  }, 60_000);

  it('reports a script that exits 1: the image, the layer, the script, the exit code and its last lines', async () => {
    const lines = Array.from({ length: 30 }, (_, index) => `echo 'output line ${index + 1}'`).join('\n');
    writeLayer('30_fail', `#!/bin/sh\n${lines}\nexit 1\n`);

    const run = await nx(['build', 'image-tiny']);

    expect(run.exitCode).not.toBe(0);
    expect(failedTasks(run.output)).toEqual(['tiny-30_fail:build']);
    expect(run.output).toContain('Layer 30_fail of image tiny: images/tiny/30_fail/build-layer exited with code 1.');
    const lastLines = run.output.split('Last lines of its output:\n')[1] ?? '';
    // The last 20 lines, and only those.
    expect(lastLines).toContain('output line 11\n');
    expect(lastLines).toContain('output line 30');
    expect(lastLines).not.toContain('output line 10\n');
    expectNoLayerOutput('30_fail');
    await expectHostClean();
  }, 120_000);

  it('keeps the layer it had when a rebuild fails: qcow2, digest, manifest and listing as they were', async () => {
    expectSuccess(await nx(['build', 'image-tiny']));
    const files = ['20_motd.qcow2', '20_motd.digest', '20_motd.manifest.json', '20_motd.snapshot.json.gz'];
    const contents = () =>
      Object.fromEntries(
        files.map((file) => [
          file,
          existsSync(dist(file))
            ? createHash('sha256')
                .update(readFileSync(dist(file)))
                .digest('hex')
            : 'missing',
        ]),
      );
    const before = contents();
    expect(Object.values(before)).not.toContain('missing');

    writeLayer('20_motd', '#!/bin/sh\necho changed > /etc/motd\nexit 1\n');
    const run = await nx(['build', 'image-tiny']);

    expect(run.exitCode).not.toBe(0);
    expect(run.output).toContain('Layer 20_motd of image tiny: images/tiny/20_motd/build-layer exited with code 1.');
    expect(contents()).toEqual(before);
    await expectHostClean();
  }, 120_000);

  it.each([
    ['SIGINT', 'Ctrl-C'],
    ['SIGTERM', 'a stop request'],
  ] as const)(
    'on %s (%s) stops the script, releases everything and exits non-zero; the next build succeeds',
    async (signal, _what) => {
      writeLayer('30_x', sleepingScript);
      const running = start(['build', 'image-tiny']);
      await running.waitForOutput(MARKER, 120_000);

      const ended = await signalAndWait(running, signal);

      expect(ended.exitCode ?? ended.signal).not.toBe(0);
      expect(ended.output).not.toContain('layer 30_x built');
      if (signal === 'SIGTERM') {
        // (On SIGINT nx silences all output at once, as a terminal would expect.)
        expect(ended.output).toContain('vmlb: SIGTERM received; stopping the script and releasing the disk...');
        expect(ended.output).toContain('Build of layer 30_x of image tiny was interrupted.');
      }
      expectNoLayerOutput('30_x');
      await expectHostClean();

      writeLayer('30_x', passingScript(`after ${signal}`));
      const rerun = await nx(['build', 'image-tiny']);
      expectSuccess(rerun);
      expect(rerun.output).toContain('vmlb: layer 30_x built');
      // The interrupted build released everything itself; nothing was left for this one.
      expect(rerun.output).not.toContain('cleaned up after an interrupted build');
      await expectHostClean();
    },
    180_000,
  );

  it('on SIGKILL: once the build is gone, its watcher releases everything it attached; the next build succeeds', async () => {
    writeLayer('30_x', sleepingScript);
    const running = start(['build', 'image-tiny']);
    await running.waitForOutput(MARKER, 120_000);
    expect(leftoverWatchersUnder(workspace.root)).toHaveLength(1);

    const ended = await signalAndWait(running, 'SIGKILL');
    expect(ended.signal).toBe('SIGKILL');

    // Nothing in the killed process group could clean up; the watcher, in a session of its own, does.
    expect(await waitForCleanHost(workspace.root, { distDir: workspace.path('dist') }, 20_000)).toBe('');
    expectNoLayerOutput('30_x');

    writeLayer('30_x', passingScript('after SIGKILL'));
    const rerun = await nx(['build', 'image-tiny']);
    expectSuccess(rerun);
    expect(rerun.output).not.toContain('cleaned up after an interrupted build');
    expect(rerun.output).toContain('vmlb: layer 30_x built');
    await expectHostClean();
  }, 180_000);

  it('on SIGKILL of the build and of its watcher: the next build of the layer releases what was left and succeeds', async () => {
    writeLayer('30_x', sleepingScript);
    const running = start(['build', 'image-tiny']);
    await running.waitForOutput(MARKER, 120_000);

    killWatchers();
    const ended = await signalAndWait(running, 'SIGKILL');
    expect(ended.signal).toBe('SIGKILL');

    // Nothing could clean up: everything the build attached is still there.
    const left = await findLeftovers(workspace.root);
    expect(left.workFolders).toEqual([dist('.vmlb')]);
    expect(left.partialFiles).toEqual([dist('.30_x.qcow2.partial')]);
    expect(left.mounts.map((mount) => mount.mountPoint).sort()).toEqual([dist('.vmlb/30_x/disk.raw'), dist('.vmlb/30_x/root')]);
    expect(left.loopDevices).toHaveLength(1);
    expect(left.processes).toEqual([expect.objectContaining({ commandLine: expect.stringMatching(/^qemu-storage-daemon /) })]);

    writeLayer('30_x', passingScript('after SIGKILL'));
    const rerun = await nx(['build', 'image-tiny']);
    expectSuccess(rerun);
    const report = cleanupReport(rerun.output, '30_x');
    expect(report).toBeDefined();
    expect(report).toContain(`unmounted ${dist('.vmlb/30_x/root')}`);
    expect(report).toContain(`detached ${left.loopDevices[0].name}`);
    expect(report).toContain(`stopped qemu-storage-daemon (pid ${left.processes[0].pid})`);
    expect(report).toContain(`unmounted ${dist('.vmlb/30_x/disk.raw')}`);
    expect(report).toContain(`removed ${dist('.30_x.qcow2.partial')}`);
    expect(rerun.output).toContain('vmlb: layer 30_x built');
    await expectHostClean();
  }, 180_000);

  it('on SIGKILL, then the layer restored from the Nx cache: the image build still releases what was left', async () => {
    // The script the layer goes back to is in the Nx cache, so its build task will not run again.
    writeLayer('30_x', passingScript('cached'));
    expectSuccess(await nx(['build', 'image-tiny']));

    writeLayer('30_x', sleepingScript);
    const running = start(['build', 'image-tiny']);
    await running.waitForOutput(MARKER, 120_000);
    killWatchers();
    await signalAndWait(running, 'SIGKILL');
    const left = await findLeftovers(workspace.root);
    expect(left.processes).toHaveLength(1);
    expect(left.workFolders).toEqual([dist('.vmlb')]);

    writeLayer('30_x', passingScript('cached'));
    const rerun = await nx(['build', 'image-tiny']);
    expectSuccess(rerun);
    expect(cacheHits(rerun.output)).toContain('tiny-30_x:build');
    expect(cleanupReport(rerun.output, '30_x')).toContain(`stopped qemu-storage-daemon (pid ${left.processes[0].pid})`);
    await expectHostClean();
  }, 180_000);

  describe('a modify-disk script that attaches a loop device of its own (as the tiny image partitions its disk)', () => {
    const original = () => readFileSync(path.join(REPO_ROOT, 'images/tiny/00_disk/modify-disk'), 'utf8');
    /** The script with `extra` inserted after the line that starts with `after`. */
    const withLines = (after: string, extra: string) => {
      const script = original();
      const line = script.indexOf(after);
      expect(line).toBeGreaterThanOrEqual(0);
      const at = script.indexOf('\n', line) + 1;
      return script.slice(0, at) + extra + script.slice(at);
    };

    it('on SIGKILL: the watcher releases that loop device as well as its own', async () => {
      // Stops while the script's partition loop device is attached and mounted (in the script's own mount namespace).
      writeFileSync(layerScript('00_disk', 'modify-disk'), withLines('mount "$part" "$root"', `echo '${MARKER}'\nsleep 600\n`));
      const running = start(['build', 'image-tiny']);
      await running.waitForOutput(MARKER, 120_000);
      // Once the export under them is gone, loop devices no longer name a file under the workspace: note them while they do.
      suspectLoops = (await findLeftovers(workspace.root)).loopDevices.map((loop) => loop.name);
      expect(suspectLoops).toHaveLength(2);
      await signalAndWait(running, 'SIGKILL');

      expect(await waitForCleanHost(workspace.root, { distDir: workspace.path('dist'), suspectLoops }, 20_000)).toBe('');
      writeFileSync(layerScript('00_disk', 'modify-disk'), `${original()}# built again after SIGKILL\n`);
      expectSuccess(await nx(['build', 'image-tiny']));
      await expectHostClean();
    }, 180_000);

    it('on SIGKILL of the build and its watcher: the next build releases that loop device as well as its own', async () => {
      writeFileSync(layerScript('00_disk', 'modify-disk'), withLines('mount "$part" "$root"', `echo '${MARKER}'\nsleep 600\n`));
      const running = start(['build', 'image-tiny']);
      await running.waitForOutput(MARKER, 120_000);
      killWatchers();
      await signalAndWait(running, 'SIGKILL');

      const left = await findLeftovers(workspace.root);
      // vmlb's loop device on the export, and the script's partition loop device on that one.
      expect(left.loopDevices).toHaveLength(2);
      expect(left.processes).toHaveLength(1);
      suspectLoops = left.loopDevices.map((loop) => loop.name);

      writeFileSync(layerScript('00_disk', 'modify-disk'), `${original()}# built again after SIGKILL\n`);
      const rerun = await nx(['build', 'image-tiny']);
      expectSuccess(rerun);
      expect(cleanupReport(rerun.output, '00_disk')).toContain(`stopped qemu-storage-daemon (pid ${left.processes[0].pid})`);
      await expectHostClean();
    }, 180_000);

    it('when it fails and leaves it attached: the failed build releases it', async () => {
      removeLayerOutput('00_disk');
      // Once the export under them is gone, loop devices no longer name a file under the workspace: note them while they do.
      const loops = watchLoops(workspace.root);
      writeFileSync(
        layerScript('00_disk', 'modify-disk'),
        withLines('trap cleanup EXIT', `trap - EXIT\necho "giving up with $part still attached" >&2\nexit 3\n`),
      );

      let run: NxRun;
      try {
        run = await nx(['build', 'image-tiny']);
      } finally {
        suspectLoops = await loops.stop();
      }

      expect(run.exitCode).not.toBe(0);
      expect(failedTasks(run.output)).toEqual(['tiny-00_disk:build']);
      expect(run.output).toContain('Layer 00_disk of image tiny: images/tiny/00_disk/modify-disk exited with code 3.');
      expect(run.output).toMatch(/giving up with \/dev\/loop\d+ still attached/);
      expectNoLayerOutput('00_disk');
      await expectHostClean();
    }, 120_000);
  });

  it('names the partitions when a # chroot-mount asks for one the disk does not have', async () => {
    writeLayer('30_x', '#!/bin/sh\n# chroot-mount 9 /boot\necho should-not-run\n');

    const run = await nx(['build', 'image-tiny']);

    expect(run.exitCode).not.toBe(0);
    expect(failedTasks(run.output)).toEqual(['tiny-30_x:build']);
    expect(run.output).toContain(
      'Partition 9 does not exist on the disk of image tiny at layer 30_x. Partitions on the disk of image tiny at layer 30_x (dos):',
    );
    expect(run.output).toMatch(/^\s*1\s+63 MiB at 1 MiB\s+type 83 \(Linux\)\s+bootable\s*$/m);
    expect(run.output).not.toContain('should-not-run');
    expectNoLayerOutput('30_x');
    await expectHostClean();
  }, 120_000);

  it('names the parent layer file when its header is corrupt', async () => {
    expectSuccess(await nx(['build', 'image-tiny']));
    try {
      zeroHead(dist('10_hello.qcow2'), 4096);
      removeLayerOutput('20_motd');
      appendFileSync(layerScript('20_motd'), 'echo changed >> /etc/motd\n');

      // Only this task: with its dependencies, nx would restore 10_hello from its cache first.
      const run = await nx(['run', 'tiny-20_motd:build', '--excludeTaskDependencies']);

      expect(run.exitCode).not.toBe(0);
      expect(tasksRun(run.output)).toEqual(['tiny-20_motd:build']);
      expect(run.output).toContain(`Disk image ${dist('10_hello.qcow2')} is not a valid qcow2 image`);
      expect(run.output).toContain('its header is damaged');
      expectNoLayerOutput('20_motd');
      await expectHostClean();
    } finally {
      await restoreDist();
    }
  }, 120_000);

  it('names the missing backing file and the layer that needs it', async () => {
    expectSuccess(await nx(['build', 'image-tiny']));
    try {
      rmSync(dist('00_disk.qcow2'));
      removeLayerOutput('20_motd');
      appendFileSync(layerScript('20_motd'), 'echo changed >> /etc/motd\n');

      const run = await nx(['run', 'tiny-20_motd:build', '--excludeTaskDependencies']);

      expect(run.exitCode).not.toBe(0);
      expect(tasksRun(run.output)).toEqual(['tiny-20_motd:build']);
      expect(run.output).toContain(`Backing file ${dist('00_disk.qcow2')} of ${dist('10_hello.qcow2')} (which names it "00_disk.qcow2") is missing.`);
      expectNoLayerOutput('20_motd');
      await expectHostClean();
    } finally {
      await restoreDist();
    }
  }, 120_000);

  it('fails before building anything when a script is not executable, naming the chmod that fixes it', async () => {
    writeLayer('30_x', passingScript('never'), 0o644);

    const run = await nx(['build', 'image-tiny']);

    expect(run.exitCode).not.toBe(0);
    expect(run.output).toContain('images/tiny/30_x/build-layer is not executable. Run: chmod +x images/tiny/30_x/build-layer');
    expect(tasksRun(run.output)).toEqual([]);
    expect(cacheHits(run.output)).toEqual([]);
    expectNoLayerOutput('30_x');
    await expectHostClean();
  }, 120_000);

  describe('when the disk holding the layers fills up', () => {
    /** Runs `work` with a tmpfs of `size` over the image's output folder (the full disk), then checks the host is clean. */
    const onFullDisk = async (size: string, work: () => Promise<void>) => {
      removeImageDist();
      await mountTmpfs(dist(), size);
      try {
        await work();
        await expectHostClean({ ignoreMounts: [dist()] });
      } finally {
        await unmountTmpfs(dist());
        removeImageDist();
      }
      await expectHostClean();
    };
    /** The build of `layer` failed on the full disk, said so, and left nothing of the layer. */
    const expectFullDiskFailure = (run: { exitCode: number; output: string }, layer: string) => {
      expect(run.exitCode).not.toBe(0);
      expect(failedTasks(run.output)).toEqual([`tiny-${layer}:build`]);
      expect(run.output).toContain(`Layer ${layer} of image tiny: writes to the new overlay failed`);
      expect(run.output).toContain(`is free on the filesystem holding ${dist()}`);
      expectNoLayerOutput(layer);
    };

    it('while a modify-disk script writes: that layer fails, clearly, and nothing of it is kept', async () => {
      await onFullDisk('3M', async () => {
        expectSuccess(await nx(['run', 'image-tiny:base']));
        // Built for real (not restored from the cache): ~3.5 MiB of overlay into what is left of 3 MiB.
        appendFileSync(layerScript('00_disk', 'modify-disk'), '# built on a full disk\n');
        expectFullDiskFailure(await nx(['build', 'image-tiny']), '00_disk');
      });
    }, 120_000);

    it('while a build-layer script writes in the chroot: that layer fails, clearly, and nothing of it is kept', async () => {
      await onFullDisk('8M', async () => {
        // The lower layers (~5.3 MiB) restored from the cache, then 6 MiB more written in the chroot.
        expectSuccess(await nx(['build', 'image-tiny']));
        writeLayer('30_x', '#!/bin/sh\nset -eu\ndd if=/dev/urandom of=/big bs=1M count=6\necho "wrote 6 MiB"\n');
        const run = await nx(['build', 'image-tiny']);
        expectFullDiskFailure(run, '30_x');
        // The script never saw the writes fail: they fail later, on their way to the overlay.
        expect(run.output).toContain('wrote 6 MiB');
      });
    }, 120_000);

    it('when the script then fails too (its writes failed first): the full disk is named as the cause, with its exit code', async () => {
      await onFullDisk('8M', async () => {
        expectSuccess(await nx(['build', 'image-tiny']));
        // sync makes the writes fail inside the script; it then exits 7 whatever happened.
        writeLayer('30_x', '#!/bin/sh\ndd if=/dev/urandom of=/big bs=1M count=6\nsync\nexit 7\n');
        const run = await nx(['build', 'image-tiny']);
        expectFullDiskFailure(run, '30_x');
        expect(run.output).toContain('is probably full. The script exited with code 7, most likely from that.');
      });
    }, 120_000);
  });
});
