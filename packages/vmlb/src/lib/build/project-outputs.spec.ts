import { mkdirSync, symlinkSync } from 'node:fs';
import type { ProjectGraph } from '@nx/devkit';
import { TempWorkspace } from '../../testing/temp-workspace';
import { resolveProjectOutputs } from './project-outputs';

/** A project graph of one project, `greeter`, whose `build` target declares `outputs`. */
function graphWith(outputs: string[] | undefined): ProjectGraph {
  return {
    nodes: {
      greeter: {
        name: 'greeter',
        type: 'app',
        data: { root: 'apps/greeter', targets: { build: { executor: 'nx:run-commands', ...(outputs ? { outputs } : {}) } } },
      },
    },
    dependencies: {},
  };
}

describe('resolveProjectOutputs', () => {
  let workspace: TempWorkspace;
  const hint = { project: 'greeter', target: 'build', mountPoint: '/run/greeter' };
  const resolve =
    (graph: ProjectGraph | undefined, hints = [hint]) =>
    () =>
      resolveProjectOutputs(hints, graph, workspace.root, 'images/x/10_app/build-layer');
  beforeEach(() => {
    workspace = new TempWorkspace();
  });
  afterEach(() => workspace.remove());

  it("finds the target's one output folder, with {workspaceRoot} and {projectRoot} resolved", () => {
    workspace.write('apps/greeter/dist/greeting.txt', 'hi');
    expect(resolve(graphWith(['{projectRoot}/dist']))()).toEqual([
      { source: workspace.path('apps/greeter/dist'), mountPoint: '/run/greeter', label: 'greeter:build' },
    ]);
  });

  it.each([
    ['no graph', undefined, "there is no project 'greeter' in the project graph"],
    [
      'several outputs',
      graphWith(['{workspaceRoot}/dist/a', '{workspaceRoot}/dist/b']),
      'greeter:build must declare exactly one output folder or file to ship, and it declares dist/a, dist/b',
    ],
    [
      'a glob',
      graphWith(['{workspaceRoot}/dist/**/*.js']),
      'greeter:build must declare exactly one output folder or file to ship, and it declares dist/**/*.js',
    ],
    [
      'an output never written',
      graphWith(['{workspaceRoot}/dist/apps/greeter']),
      'greeter:build did not write its output dist/apps/greeter. Check that the target writes there (nx run greeter:build)',
    ],
  ])('refuses %s, naming the script and the hint', (_case, graph, problem) => {
    expect(resolve(graph)).toThrow(`images/x/10_app/build-layer: # project-output greeter:build /run/greeter: ${problem}`);
  });

  it('refuses an output that leads out of the workspace through a symlink', () => {
    const outside = new TempWorkspace();
    try {
      mkdirSync(workspace.path('dist'), { recursive: true });
      symlinkSync(outside.root, workspace.path('dist/greeter'));
      expect(resolve(graphWith(['{workspaceRoot}/dist/greeter']))).toThrow(`dist/greeter resolves to ${outside.root}, outside the workspace`);
    } finally {
      outside.remove();
    }
  });
});
