import * as path from 'node:path';
import type { ExecutorContext } from '@nx/devkit';
import { materialiseChain } from '../../lib/blob/chain';
import { openBlobStores } from '../../lib/blob/config';
import { reportFailure } from '../../lib/util/executor-errors';
import { withInterruptSignal } from '../../lib/util/interrupt';
import { formatBytes } from '../../lib/util/units';
import type { PullExecutorSchema } from './schema';
import { chainTop } from '../../lib/image/image-chain';

export default async function pullExecutor(options: PullExecutorSchema, context: ExecutorContext): Promise<{ success: boolean }> {
  return reportFailure(async () => {
    const chain = path.resolve(context.root, chainTop(options, context.root));
    const stores = await openBlobStores(context.root);
    const started = Date.now();
    const counts = await withInterruptSignal((signal) => materialiseChain(chain, stores, { log: (message) => console.log(message), signal }));
    const total = counts.present + counts.linked + counts.downloaded;
    console.log(
      `vmlb: image ${options.imageName}: ${total} layer files in place in ${((Date.now() - started) / 1000).toFixed(1)} s: ` +
        `${counts.present} already there, ${counts.linked} linked from ${stores.local.root}, ` +
        `${counts.downloaded} downloaded (${formatBytes(counts.downloadedBytes)})${stores.remote ? ` from ${stores.remote.url}` : ''}`,
    );
  });
}
