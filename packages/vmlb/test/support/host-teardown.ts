import { cpSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { type LeftoverOptions, processGroupMembers, releaseHostLeftovers, waitForProcessGroupExit } from './host-state';
import { type NxWorkspace, REPO_ROOT } from './nx-workspace';

/**
 * Kills background nx runs a test left running: each is the leader of its own
 * process group (see `startNx`), so the whole group gets SIGKILL, by PID, never
 * by name; then waits up to `timeoutMs` for each group to be gone.
 */
export async function killProcessGroups(pids: Iterable<number | undefined>, timeoutMs = 10_000): Promise<void> {
  for (const pid of pids) {
    if (!pid) continue;
    if (processGroupMembers(pid).length > 0) {
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
    await waitForProcessGroupExit(pid, timeoutMs);
  }
}

export interface HostTeardown {
  /** PIDs of background nx runs (process group leaders) to kill first. */
  processGroups?: Iterable<number | undefined>;
  /** How `releaseHostLeftovers` finds them (dist folder, loop devices seen earlier, mounts of the test's own). */
  leftovers?: LeftoverOptions;
  /** Images to put back as this repository has them (`images/<name>`), after a test edited its copy. */
  restoreImages?: string[];
}

/**
 * The teardown of an integration spec that builds on the host (an `afterEach`):
 * a failed test must not leave the machine dirty, nor break the tests after it.
 * Kills leftover nx process groups (killProcessGroups), releases what a build
 * left on the host (releaseHostLeftovers, warning with what it released) and
 * restores the workspace's images from this repository. Returns what it released.
 */
export async function tearDownHost(workspace: NxWorkspace, teardown: HostTeardown = {}): Promise<string[]> {
  await killProcessGroups(teardown.processGroups ?? []);
  const released = await releaseHostLeftovers(workspace.root, teardown.leftovers);
  if (released.length) console.warn(`released what the test left behind:\n${released.join('\n')}`);
  for (const image of teardown.restoreImages ?? []) {
    rmSync(workspace.path('images', image), { recursive: true, force: true });
    cpSync(path.join(REPO_ROOT, 'images', image), workspace.path('images', image), { recursive: true });
  }
  return released;
}
