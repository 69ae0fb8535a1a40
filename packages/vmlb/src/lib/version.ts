import { readFileSync } from 'node:fs';
import * as path from 'node:path';

/**
 * vmlb's own version. Layer tasks carry it in their options, so that a new
 * vmlb (which may build layers differently) invalidates cached layers.
 * Read at run time: src/lib and dist/lib both sit two levels below the
 * package root.
 */
export const VMLB_VERSION: string = JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')).version;
