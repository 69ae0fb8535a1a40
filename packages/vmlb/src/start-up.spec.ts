import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import * as path from 'node:path';

/**
 * What a process Nx starts loads before it does anything: the plugin's
 * entry (a plugin worker Nx starts for every run with tasks, for
 * preTasksExecution) and the layer and image executors (a task process per
 * layer). @nx/devkit, Ajv and execa each cost a few hundred milliseconds of
 * CPU there; they are loaded only where a run needs them. Read from the
 * compiled plugin, as Nx loads it (`npm test` builds it first).
 */
const DIST = path.resolve(__dirname, '../dist');
const HEAVY = ['@nx/devkit', 'ajv', 'execa'];

/** The packages of HEAVY that requiring `module` (of dist/) loads, in a fresh node with Nx's task runner already loaded as in a task process. */
function heavyPackagesLoadedBy(module: string, preload: string[] = []): string[] {
  const script = `
    for (const m of ${JSON.stringify(preload)}) require(m);
    const before = new Set(Object.keys(require.cache));
    require(${JSON.stringify(path.join(DIST, module))});
    const loaded = Object.keys(require.cache).filter((file) => !before.has(file));
    const heavy = ${JSON.stringify(HEAVY)}.filter((name) => loaded.some((file) => file.includes('/node_modules/' + name + '/')));
    process.stdout.write(JSON.stringify(heavy));`;
  return JSON.parse(execFileSync(process.execPath, ['-e', script], { cwd: path.resolve(__dirname, '..'), encoding: 'utf8' })) as string[];
}

describe('what a process Nx starts loads', () => {
  beforeAll(() => {
    if (!existsSync(path.join(DIST, 'index.js'))) throw new Error(`${DIST} has no compiled plugin: run npm run build first.`);
  });

  it('loads none of them in the plugin entry: the graph hooks load their code when called', () => {
    expect(heavyPackagesLoadedBy('index.js')).toEqual([]);
  });

  it('loads none of them in the layer and image executors', () => {
    // A task process has loaded Nx's run command by the time it requires the executor.
    const taskRunner = ['nx/src/command-line/run/run'];
    expect(heavyPackagesLoadedBy('executors/layer/executor.js', taskRunner)).toEqual([]);
    expect(heavyPackagesLoadedBy('executors/image/executor.js', taskRunner)).toEqual([]);
  });
});
