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
// Two comparisons: (1) vmlb runs against bare runs, which on a machine whose
// disk writes vary by more than 5 % between runs cannot resolve 5 %; (2)
// within each vmlb run, its whole time against the qemu-img convert inside
// it, which is the same command line as the bare one: what vmlb adds,
// measured without the noise between runs.
//
// Usage: node tools/bench/flatten.mjs [path/to/top-of-chain.qcow2]
//        (default dist/images/prod/50_cleanup.qcow2: npx nx build image-prod first)
import { execFileSync } from 'node:child_process';
import { rmSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { chainArgument, median, plugin, repo, runs as runsOr, scratchFolder, spread } from './lib.mjs';

const { exportDisk } = plugin('lib/export/disk-export');
// Every qemu-img vmlb runs goes through lib/exec's run(); timing it there
// splits each vmlb run into the conversion itself and vmlb's own time around
// it, within the same run, free of the noise between two runs.
const exec = plugin('lib/util/exec');
const originalRun = exec.run;
let convertMs = 0;
exec.run = async (file, args, options) => {
  const started = process.hrtime.bigint();
  try {
    return await originalRun(file, args, options);
  } finally {
    if (file === 'qemu-img') convertMs += Number(process.hrtime.bigint() - started) / 1e6;
  }
};

const runs = runsOr(6);
const chain = chainArgument();
// Beside the chain: the same filesystem, as dist/ exports are.
const { dir: work, cleanup } = scratchFolder(path.dirname(chain), '.bench-flatten-');

async function timed(work) {
  const started = process.hrtime.bigint();
  await work();
  return Number(process.hrtime.bigint() - started) / 1e6;
}

async function measure(label, bareArgs, exportOptions, describe = 'convert + rename + sha256') {
  const bareOut = path.join(work, 'bare.qcow2');
  const vmlbOut = path.join(work, 'vmlb', 'out.qcow2');
  const bare = () => execFileSync('qemu-img', ['convert', ...bareArgs, chain, bareOut]);
  const vmlb = () =>
    exportDisk(chain, vmlbOut, { compress: false, vmdkSubformat: 'monolithicSparse', machine: { cpus: 1, memoryMiB: 512 }, progress: false, ...exportOptions });
  bare();
  await vmlb();
  const bareTimes = [];
  const vmlbTimes = [];
  /** Per vmlb run: time outside qemu-img convert (mkdir, rename, the checksum). */
  const aroundTimes = [];
  const insideTimes = [];
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
        convertMs = 0;
        const total = await timed(vmlb);
        vmlbTimes.push(total);
        insideTimes.push(convertMs);
        aroundTimes.push(total - convertMs);
      },
    ];
    if (run % 2) sides.reverse();
    for (const side of sides) await side();
  }
  const ratio = median(vmlbTimes) / median(bareTimes);
  const withinRun = median(vmlbTimes.map((total, index) => total / insideTimes[index]));
  return {
    ab: `| ${label} | \`qemu-img convert ${bareArgs.join(' ')}\` | ${spread(bareTimes)} | ${describe}: ${spread(vmlbTimes)} | ${ratio.toFixed(2)}× | ${(statSync(vmlbOut).size / 1e9).toFixed(2)} GB |`,
    within: `| ${label} | ${spread(insideTimes)} | ${spread(aroundTimes)} | ${withinRun.toFixed(3)}× |`,
  };
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
  for (const row of rows) console.log(row.ab);
  console.log("\nThe same vmlb runs, split: the qemu-img convert inside them, and vmlb's own time around it.");
  console.log('\n| export | inside qemu-img convert, s | vmlb around it, s | median of (whole run / its convert) |');
  console.log('| --- | --- | --- | --- |');
  for (const row of rows) console.log(row.within);
} finally {
  cleanup();
}
