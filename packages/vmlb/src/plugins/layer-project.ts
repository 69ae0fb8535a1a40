import type { ProjectConfiguration, TargetConfiguration } from '@nx/devkit';
import { bindSourcesOutside, layerInputs, layerKeyOptions } from '../lib/cache-identity/task-key';
import { manifestPathFor, snapshotPathFor } from '../lib/image/dist-layout';
import { describeHints } from '../lib/image/hints';
import type { ImageInfo, LayerInfo } from '../lib/image/layer-discovery';
import { imageProjectName, layerProjectName } from '../lib/image/project-names';
import { type NormalizedOptions, blobOption, chainFileOutputs } from './options';
import { targetMetadata } from './target-metadata';

/** Where a layer sits in its chain: the file it is an overlay on, the project that builds that file (none for the base), its own output. */
export interface ChainPosition {
  parentFile: string;
  parentProject?: string;
  output: string;
}

/** The project of one layer: a build target on its parent's, keyed as lib/cache-identity/task-key says. */
export function layerProject(image: ImageInfo, layer: LayerInfo, position: ChainPosition, options: NormalizedOptions): ProjectConfiguration {
  const name = layerProjectName(image.name, layer.folder);
  const { parentFile, parentProject, output } = position;
  const { projectOutputs } = layer.hints;
  const build: TargetConfiguration = {
    executor: 'vmlb:layer',
    // noshare layers are not Nx-cacheable (Nx would upload them to a remote
    // cache); their executor keeps them in a store on this machine instead.
    cache: !layer.hints.nocache && !layer.hints.noshare,
    dependsOn: [
      parentProject
        ? { target: options.buildTargetName, projects: [parentProject] }
        : { target: options.baseTargetName, projects: [imageProjectName(image.name)] },
      ...projectOutputs.map(({ project, target }) => ({ target, projects: [project] })),
    ],
    inputs: layerInputs({
      rebuildEverySeconds: layer.hints.rebuildEvery,
      shipsOutputsOutside: projectOutputs.length ? options.distDir : undefined,
      bindSources: bindSourcesOutside(layer.dir, layer.hints.bindMounts),
      env: image.config.env,
    }),
    outputs: [...chainFileOutputs(output, options), `{workspaceRoot}/${manifestPathFor(output)}`, `{workspaceRoot}/${snapshotPathFor(output)}`],
    options: {
      imageName: image.name,
      layer: layer.folder,
      layerDir: layer.dir,
      script: layer.script,
      parent: parentFile,
      output,
      ...(image.config.rootPartition !== undefined ? { rootPartition: image.config.rootPartition } : {}),
      ...(projectOutputs.length ? { projectOutputs } : {}),
      ...layerKeyOptions(image.config),
      ...blobOption(options),
    },
    metadata: targetMetadata(describeLayerTarget(image, layer, output), name, options.buildTargetName, { nbd: '/dev/nbd0' }),
  };
  return {
    name,
    root: layer.dir,
    projectType: 'library',
    tags: ['vmlb:layer', `vmlb:image:${image.name}`],
    implicitDependencies: parentProject ? [parentProject] : [],
    targets: { [options.buildTargetName]: build },
    metadata: { description: `Layer ${layer.folder} of image ${image.name} (${layer.kind})`, technologies: ['vmlb'] },
  };
}

/** What a layer's build target does, with its hints, for `nx show project`. */
function describeLayerTarget(image: ImageInfo, layer: LayerInfo, output: string): string {
  const hints = describeHints(layer.hints);
  return (
    `Build layer ${layer.folder} of image ${image.name}: run ${layer.kind} ` +
    (layer.kind === 'build-layer' ? 'in a chroot of the image' : 'on the host against the disk') +
    ` into ${output}` +
    (hints.length ? ` (hints: ${hints.join(', ')})` : '') +
    (layer.hints.nocache
      ? '; nocache: rebuilt on every run'
      : layer.hints.noshare
        ? "; noshare: kept in this machine's layer store, never in a remote cache"
        : '')
  );
}
