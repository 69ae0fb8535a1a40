export { createNodes, type VmlbPluginOptions } from './plugins/plugin';
export { preTasksExecution } from './plugins/pre-tasks-execution';
export { createDependencies } from './plugins/project-output-dependencies';
