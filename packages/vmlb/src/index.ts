export { createNodes, type VmlbPluginOptions } from './plugins/plugin';
export { preTasksExecution } from './plugins/remote-cache-guard';
export { createDependencies } from './plugins/project-output-dependencies';
