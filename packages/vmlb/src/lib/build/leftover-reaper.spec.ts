import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';

// The watcher runs as its own process from the compiled plugin (npm run
// build), as it does beside every layer build: a stand-in build starts it,
// then dies or stops it. (What it releases on a real attached disk
// is covered by test/build-faults.spec.ts, at every phase of a build.)
const compiled = path.resolve(__dirname, '../../../dist/lib/build/leftover-reaper.js');

describe('LeftoverReaper', () => {
  let folder: string;
  let files: { workDir: string; lockFolder: string; partial: string; output: string; digest: string; companions: string[] };

  beforeEach(() => {
    folder = mkdtempSync(path.join(tmpdir(), 'vmlb-reaper-'));
    files = {
      workDir: path.join(folder, '.vmlb', '30_x'),
      lockFolder: folder,
      partial: path.join(folder, '.30_x.qcow2.partial'),
      output: path.join(folder, '30_x.qcow2'),
      digest: path.join(folder, '30_x.digest'),
      companions: [path.join(folder, '30_x.manifest.json')],
    };
    mkdirSync(files.workDir, { recursive: true });
    writeFileSync(files.partial, 'half an overlay');
  });
  afterEach(() => rmSync(folder, { recursive: true, force: true }));

  /**
   * A stand-in build: starts a watcher, then runs `then` (JS) in the same
   * process. Prints the watcher's PID and its parent's, and its own PID.
   */
  async function standInBuild(then: string): Promise<{ watcher: number; watcherParent: number; build: number }> {
    // The build records itself as the work folder's owner, as AttachedDisk does.
    const state = path.join(files.workDir, 'state.json');
    const script = `require('node:fs').writeFileSync(${JSON.stringify(state)}, JSON.stringify({ owner: process.pid, loopDevices: [], mounts: [] }));
      const { LeftoverReaper } = require(${JSON.stringify(compiled)});
      const reaper = LeftoverReaper.start(${JSON.stringify(files)});
      setInterval(() => undefined, 1000);
      reaper.pid.then((pid) => {
        const parent = require('node:fs').readFileSync('/proc/' + pid + '/stat', 'utf8').split(') ')[1].split(' ')[1];
        console.log(JSON.stringify({ watcher: pid, watcherParent: Number(parent), build: process.pid }));
        setTimeout(async () => { ${then} }, 100);
      });`;
    const build = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    build.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await new Promise((resolve) => build.on('exit', resolve));
    return JSON.parse(output.trim());
  }

  async function waitUntilGone(pid: number): Promise<void> {
    for (let tries = 0; tries < 100; tries++) {
      try {
        process.kill(pid, 0);
      } catch {
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`watcher ${pid} still running`);
  }

  it('releases the work folder and the partial overlay once the build is killed', async () => {
    // Renamed into place, but its digest never written: not a layer.
    writeFileSync(files.output, 'an unfinished layer');
    writeFileSync(files.companions[0], '{}');
    const { watcher, watcherParent, build } = await standInBuild(`process.kill(process.pid, 'SIGKILL');`);
    // No child of the build: a kill of the build's process tree (Nx's, leaves first) passes it by.
    expect(watcherParent).not.toBe(build);
    await waitUntilGone(watcher);
    expect([files.workDir, files.partial, files.output, files.companions[0]].filter(existsSync)).toEqual([]);
  });

  it('releases them too when the build dies before its watcher has even started', async () => {
    const state = path.join(files.workDir, 'state.json');
    const script = `require('node:fs').writeFileSync(${JSON.stringify(state)}, JSON.stringify({ owner: process.pid, loopDevices: [], mounts: [] }));
      require(${JSON.stringify(compiled)}).LeftoverReaper.start(${JSON.stringify(files)});
      process.kill(process.pid, 'SIGKILL');`;
    await new Promise((resolve) => spawn(process.execPath, ['-e', script], { stdio: 'inherit' }).on('exit', resolve));
    for (let tries = 0; tries < 100 && [files.workDir, files.partial].some(existsSync); tries++) await new Promise((resolve) => setTimeout(resolve, 100));
    expect([files.workDir, files.partial].filter(existsSync)).toEqual([]);
  });

  it('leaves a finished layer (its digest written) alone', async () => {
    writeFileSync(files.output, 'a layer');
    writeFileSync(files.digest, 'its digest');
    const { watcher } = await standInBuild(`process.kill(process.pid, 'SIGKILL');`);
    await waitUntilGone(watcher);
    expect([files.output, files.digest].filter(existsSync)).toEqual([files.output, files.digest]);
  });

  it('does nothing, and is gone, once the build stops it', async () => {
    const { watcher } = await standInBuild(`await reaper.disarm(); process.exit(0);`);
    await waitUntilGone(watcher);
    expect(existsSync(files.partial)).toBe(true);
    expect(existsSync(files.workDir)).toBe(true);
  });
});
