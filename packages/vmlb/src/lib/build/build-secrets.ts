import { readFileSync, realpathSync } from 'node:fs';
import * as path from 'node:path';
import { type SecretHint, secretVariable } from '../image/cache-and-secret-hints';

/**
 * The values of a layer's `# secret` hints, read when the build runs from
 * VMLB_SECRET_<NAME> or the file VMLB_SECRET_<NAME>_FILE names: never from
 * the repository, never part of a key, an option or a message.
 */

/** One secret as a build has it: where the script reads it, and its value or why there is none. */
export interface BuildSecret {
  name: string;
  target: string;
  /** The variable that holds the value, and the one that names a file holding it. */
  variable: string;
  fileVariable: string;
  value?: Buffer;
  /** Where the value came from, for the build log (a variable's name, never the value). */
  source?: string;
  /** Why there is no value; the fix follows from it. */
  problem?: string;
}

/** A secret a layer needs has no value; the message names the layer, the hint and the variables to set. */
export class MissingSecretError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MissingSecretError';
  }
}

const isInside = (folder: string, file: string) => file === folder || file.startsWith(`${folder}${path.sep}`);

/** Each secret hint with its value from `env` (a variable, or a file outside the workspace), or the problem that keeps it from one. */
export function secretsFromEnvironment(hints: SecretHint[] | undefined, env: NodeJS.ProcessEnv, workspaceRoot: string): BuildSecret[] {
  return (hints ?? []).map((hint) => {
    const variable = secretVariable(hint.name);
    const fileVariable = `${variable}_FILE`;
    const secret: BuildSecret = { name: hint.name, target: hint.target, variable, fileVariable };
    const inline = env[variable];
    const file = env[fileVariable];
    if (inline) return { ...secret, value: Buffer.from(inline), source: variable };
    if (!file) return { ...secret, problem: `neither ${variable} nor ${fileVariable} is set${inline === '' ? ` (${variable} is empty)` : ''}` };
    let real: string;
    let value: Buffer;
    try {
      real = realpathSync(path.resolve(workspaceRoot, file));
      value = readFileSync(real);
    } catch (error) {
      return {
        ...secret,
        problem: `${fileVariable} names ${file}, which cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
      };
    }
    // A file in the workspace is a step from being committed, hashed into a layer folder's key or bound at /mnt.
    if (isInside(realpathSync(workspaceRoot), real)) return { ...secret, problem: `${fileVariable} names ${file}, which is inside the workspace` };
    if (value.length === 0) return { ...secret, problem: `${fileVariable} names ${file}, which is empty` };
    return { ...secret, value, source: fileVariable };
  });
}

/** Fails, naming every secret without a value and what to set, before anything of the layer is made. */
export function checkSecrets(secrets: BuildSecret[] | undefined, layer: { imageName: string; layer: string; script: string }): void {
  const missing = (secrets ?? []).filter((secret) => !secret.value);
  if (!missing.length) return;
  throw new MissingSecretError(
    missing
      .map(
        (secret) =>
          `Layer ${layer.layer} of image ${layer.imageName}: ${layer.script}: # secret ${secret.name} ${secret.target} has no value: ${secret.problem}. ` +
          `Set ${secret.variable} to the secret, or ${secret.fileVariable} to a file outside the workspace that holds it. Nothing was built.`,
      )
      .join('\n'),
  );
}
