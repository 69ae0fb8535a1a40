export { createNodes, type VmlbPluginOptions } from './plugins/plugin';
