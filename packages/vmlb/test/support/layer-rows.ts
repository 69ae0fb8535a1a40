import type { NxWorkspace } from './nx-workspace';

/** One row of `nx run image-<x>:layers --json`, as far as the specs read it. */
export interface LayerRow {
  name: string;
  hints: string[];
  hash: string | null;
  state: string;
}

/** The rows of `nx run image-<image>:layers --json` (Nx's own lines around the JSON left out). */
export async function layerRows(workspace: NxWorkspace, image: string, env: Record<string, string> = {}): Promise<LayerRow[]> {
  const output = await workspace.nxOk(['run', `image-${image}:layers`, '--json'], { env });
  return JSON.parse(output.slice(output.indexOf('\n['), output.lastIndexOf(']') + 1)) as LayerRow[];
}
