import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { createProjectGraphAsync, type ProjectGraph, type Task, type TaskGraph } from '@nx/devkit';

/**
 * The task hashes Nx would compute for an image's layer tasks, without
 * running them: what `nx run image-<x>:layers` shows and looks up in the
 * caches.
 *
 * A layer's hash covers its parent chain through the parents' `.digest`
 * outputs, which Nx reads from disk when it hashes the task, after the
 * parent ran. To know a layer's hash before that (dist/ deleted, a parent
 * only in the cache), the digests are given here explicitly: the hasher
 * reads dependency outputs from a scratch copy of the workspace root whose
 * image output folder holds exactly those digest files, while every other
 * path links to the real workspace (so JSON and runtime inputs read the
 * same files Nx would).
 *
 * This is the computation `nx graph` makes for task graphs (Nx's own
 * task hasher over a task graph), run in process. It uses Nx modules that
 * are not part of @nx/devkit; the layers integration test compares its
 * result with the NX_TASK_HASH of real builds, so an Nx upgrade that
 * changes them fails loudly there.
 */
export class NxTaskHashes {
  private constructor(
    private readonly graph: ProjectGraph,
    private readonly taskGraph: TaskGraph,
    private readonly hasher: { hashTasks(tasks: Task[], taskGraph: TaskGraph, envs: Record<string, NodeJS.ProcessEnv>): Promise<Array<{ value: string }>> },
    private readonly taskEnv: (task: Task, graph: ProjectGraph) => NodeJS.ProcessEnv,
    private readonly scratchRoot: string,
    private readonly outputDir: string,
  ) {}

  /**
   * Prepares hashing of `taskIds` (e.g. `tiny-10_hello:build`) in the
   * workspace at `workspaceRoot`, whose image outputs live in
   * `outputDir` (workspace-relative: vmlb's dist folder, e.g. `dist/images`, which holds the folders of a derived image's whole chain).
   */
  static async open(workspaceRoot: string, taskIds: string[], outputDir: string): Promise<NxTaskHashes> {
    // The in-process hasher needs the workspace's file hashes in this
    // process, which only an in-process project graph computation leaves here.
    const daemonSetting = process.env.NX_DAEMON;
    process.env.NX_DAEMON = 'false';
    let graph: ProjectGraph;
    try {
      graph = await createProjectGraphAsync({ exitOnError: false });
    } finally {
      if (daemonSetting === undefined) delete process.env.NX_DAEMON;
      else process.env.NX_DAEMON = daemonSetting;
    }
    /* eslint-disable @typescript-eslint/no-require-imports */
    const { readNxJson } = require('nx/src/config/nx-json') as { readNxJson(): unknown };
    const { InProcessTaskHasher } = require('nx/src/hasher/task-hasher');
    const { getFileMap } = require('nx/src/project-graph/build-project-graph');
    const { createTaskGraph } = require('nx/src/tasks-runner/create-task-graph');
    const { getTaskSpecificEnv } = require('nx/src/tasks-runner/task-env');
    const workspaceRootModule = require('nx/src/utils/workspace-root') as { workspaceRoot: string; setWorkspaceRoot(root: string): void };
    /* eslint-enable @typescript-eslint/no-require-imports */

    const projects = [...new Set(taskIds.map((id) => splitTaskId(id).project))];
    const targets = [...new Set(taskIds.map((id) => splitTaskId(id).target))];
    const taskGraph = createTaskGraph(graph, {}, projects, targets, undefined, {}) as TaskGraph;
    for (const id of taskIds) {
      if (!taskGraph.tasks[id]) throw new Error(`Nx has no task ${id} in this workspace; is the vmlb plugin in nx.json?`);
    }

    const scratchRoot = mkdtempSync(path.join(tmpdir(), 'vmlb-hash-'));
    try {
      mirrorAround(workspaceRoot, scratchRoot, outputDir);
      const nxJson = readNxJson();
      const realRoot = workspaceRootModule.workspaceRoot;
      workspaceRootModule.setWorkspaceRoot(scratchRoot);
      let hasher;
      try {
        hasher = new InProcessTaskHasher(graph, nxJson, getFileMap().rustReferences, {});
      } finally {
        workspaceRootModule.setWorkspaceRoot(realRoot);
      }
      return new NxTaskHashes(graph, taskGraph, hasher, getTaskSpecificEnv, scratchRoot, outputDir);
    } catch (error) {
      rmSync(scratchRoot, { recursive: true, force: true });
      throw error;
    }
  }

  /**
   * The hash of `taskId` when the output folder holds exactly the digest
   * files in `digests` (path in it → content, e.g. `prod/00_base.digest`
   * when the folder is vmlb's dist folder).
   */
  async hash(taskId: string, digests: Record<string, string>): Promise<string> {
    const task = this.taskGraph.tasks[taskId];
    if (!task) throw new Error(`No task ${taskId} was prepared for hashing.`);
    const folder = path.join(this.scratchRoot, this.outputDir);
    for (const name of readdirSync(folder)) rmSync(path.join(folder, name), { recursive: true, force: true });
    for (const [name, content] of Object.entries(digests)) {
      const file = path.join(folder, name);
      if (path.relative(folder, file).startsWith('..')) throw new Error(`Digest ${name} is outside ${this.outputDir}.`);
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, content);
    }
    const [result] = await this.hasher.hashTasks([task], this.taskGraph, { [taskId]: this.taskEnv(task, this.graph) });
    return result.value;
  }

  close(): void {
    rmSync(this.scratchRoot, { recursive: true, force: true });
  }
}

function splitTaskId(id: string): { project: string; target: string } {
  const colon = id.lastIndexOf(':');
  if (colon <= 0) throw new Error(`'${id}' is not a task id (project:target).`);
  return { project: id.slice(0, colon), target: id.slice(colon + 1) };
}

/**
 * Makes `scratch` look like `root` except along `relativeDir`: every entry
 * beside that path is a symlink to the real one, the folders on the path
 * are real (empty but for those links), and the last one starts empty.
 */
export function mirrorAround(root: string, scratch: string, relativeDir: string): void {
  const parts = path.normalize(relativeDir).split(path.sep).filter(Boolean);
  if (parts.length === 0 || parts.includes('..')) throw new Error(`'${relativeDir}' is not a folder inside the workspace.`);
  let real = root;
  let copy = scratch;
  for (const part of parts) {
    if (existsSync(real)) {
      for (const entry of readdirSync(real)) {
        if (entry !== part) symlinkSync(path.join(real, entry), path.join(copy, entry));
      }
    }
    real = path.join(real, part);
    copy = path.join(copy, part);
    mkdirSync(copy);
  }
}
