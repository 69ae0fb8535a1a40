import type { CreateDependencies, CreateNodes } from '@nx/devkit';
import { IMAGE_FILES_GLOB } from './lib/image/image-files';
import type { VmlbPluginOptions } from './plugins/options';

export type { VmlbPluginOptions } from './plugins/options';
export { preTasksExecution } from './plugins/pre-tasks-execution';

// Nx starts a plugin worker for every run that has tasks, only to call
// preTasksExecution; the graph hooks load their code (and the devkit) when
// Nx first calls them, so that worker starts in a fraction of the time.

/** Every image folder's projects (plugins/plugin). */
export const createNodes: CreateNodes<VmlbPluginOptions> = [
  IMAGE_FILES_GLOB,
  (files, options, context) => (require('./plugins/plugin') as typeof import('./plugins/plugin')).createNodes[1](files, options, context),
];

/** The edges `# project-output` hints add (plugins/project-output-dependencies). */
export const createDependencies: CreateDependencies<VmlbPluginOptions> = (options, context) =>
  (require('./plugins/project-output-dependencies') as typeof import('./plugins/project-output-dependencies')).createDependencies(options, context);
