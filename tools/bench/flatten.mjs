#!/usr/bin/env node
// Flatten against a bare `qemu-img convert` of the same chain, in the same
// run: the baseline is what a user would type by hand; vmlb's export is the
// same convert, written under a temporary name and renamed,
// plus the sha256 of the result for the .sha256 file. Both with a hot page
// cache (each measured command runs once untimed first), RUNS (default 6)
// runs each, medians with min and max; the ratio is of the medians. Uses
// the compiled plugin (npm run build). Neither side's writes are flushed to disk inside the timing
// (qemu-img does not fsync its output, and neither does vmlb).
//
// Usage: node tools/bench/flatten.mjs [path/to/top-of-chain.qcow2]
//        (default dist/images/prod/50_cleanup.qcow2: npx nx build image-prod first)
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';

const require = createRequire(import.meta.url);
const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const { exportDisk } = require(path.join(repo, 'packages/vmlb/dist/lib/disk-export.js'));

const runs = Number(process.env.RUNS ?? 6);
const chain = path.resolve(process.argv[2] ?? path.join(repo, 'dist/images/prod/50_cleanup.qcow2'));
if (!existsSync(chain)) {
  console.error(`${chain} does not exist: build the chain first (npx nx build image-prod), or give the top of another chain.`);
  process.exit(1);
}
// Beside the chain: the same filesystem, as dist/ exports are.
const work = mkdtempSync(path.join(path.dirname(chain), '.bench-flatten-'));
process.on('SIGINT', () => {
  rmSync(work, { recursive: true, force: true });
  process.exit(130);
});

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};
const seconds = (ms) => (ms / 1000).toFixed(2);
const spread = (values) => `${seconds(median(values))} (${seconds(Math.min(...values))}–${seconds(Math.max(...values))})`;

async function timed(work) {
  const started = process.hrtime.bigint();
  await work();
  return Number(process.hrtime.bigint() - started) / 1e6;
}

async function measure(label, bareArgs, exportOptions, describe = 'convert + rename + sha256') {
  const bareOut = path.join(work, 'bare.qcow2');
  const vmlbOut = path.join(work, 'vmlb', 'out.qcow2');
  const bare = () => execFileSync('qemu-img', ['convert', ...bareArgs, chain, bareOut]);
  const vmlb = () => exportDisk(chain, vmlbOut, { compress: false, vmdkSubformat: 'monolithicSparse', machine: { cpus: 1, memoryMiB: 512 }, progress: false, ...exportOptions });
  bare();
  await vmlb();
  const bareTimes = [];
  const vmlbTimes = [];
  // Each timed command starts after a sync, with no earlier output to
  // remove inside the timing. Even so, on this machine the second of two
  // back-to-back 1.3 GB writes is often up to twice as slow as the first,
  // so the two sides take turns going first.
  for (let run = 0; run < runs; run++) {
    const sides = [
      async () => {
        rmSync(bareOut, { force: true });
        execFileSync('sync');
        bareTimes.push(await timed(async () => bare()));
      },
      async () => {
        rmSync(vmlbOut, { force: true });
        execFileSync('sync');
        vmlbTimes.push(await timed(vmlb));
      },
    ];
    if (run % 2) sides.reverse();
    for (const side of sides) await side();
  }
  const ratio = median(vmlbTimes) / median(bareTimes);
  return `| ${label} | \`qemu-img convert ${bareArgs.join(' ')}\` | ${spread(bareTimes)} | ${describe}: ${spread(vmlbTimes)} | ${ratio.toFixed(2)}× | ${(statSync(vmlbOut).size / 1e9).toFixed(2)} GB |`;
}

try {
  const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', '--backing-chain', chain], { encoding: 'utf8' }));
  const data = info.reduce((sum, file) => sum + file['actual-size'], 0);
  console.log(`chain: ${path.relative(repo, chain)}, ${info.length} files, ${(data / 1e9).toFixed(2)} GB of data; ${runs} runs each, hot page cache`);
  const rows = [
    await measure('qcow2', ['-O', 'qcow2'], { format: 'qcow2' }),
    await measure('qcow2, --sha256=false', ['-O', 'qcow2'], { format: 'qcow2', sha256: false }, 'convert + rename'),
    await measure('qcow2, zstd', ['-O', 'qcow2', '-c', '-o', 'compression_type=zstd'], { format: 'qcow2', compress: true }),
  ];
  console.log('\n| export | baseline | baseline, s | vmlb flatten, s | ratio of medians | file |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const row of rows) console.log(row);
} finally {
  rmSync(work, { recursive: true, force: true });
}
