/** The metadata of a vmlb target: what it does, and its --help command with an example (`nx show project` shows both). */
export function targetMetadata(description: string, project: string, target: string, exampleOptions: Record<string, unknown>) {
  return { technologies: ['vmlb'], description, help: { command: `npx nx run ${project}:${target} --help`, example: { options: exampleOptions } } };
}
