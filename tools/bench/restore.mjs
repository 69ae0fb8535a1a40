#!/usr/bin/env node
// Restoring a cached chain into dist/ (after `rm -rf dist`, or a branch
// switch), against `cp` of exactly the same files into another folder on the
// same filesystem, in the same run:
// - inline (the default: the qcow2 files are Nx outputs): `rm -rf` of the
//   image's dist folder (untimed), then `nx build image-<x>`, every task a
//   local cache hit, so Nx copies every layer back. Nx's fixed cost is the
//   same command with the outputs already in place (daemon on: Nx sees they
//   match and copies nothing), so the copy's own throughput is the bytes over
//   the difference of the two medians. With the daemon off (CI, containers)
//   Nx cannot tell, and copies the whole chain on every cache hit.
// - blob mode (VMLB_BLOB_STORE=file://..., Nx caches only refs), in a scratch
//   workspace with one big random layer: `rm -rf` of the image's dist folder,
//   then `nx run image-<x>:pull`, which restores the refs and links every
//   layer from the blob cache.
// The baseline reads the same source files (Nx's cache entries; the blob
// cache) with the page cache in the same state: each timed command starts
// after its target is removed and a `sync`; neither side flushes its writes.
// The sides take turns, RUNS (default 5) runs each, after one untimed run of
// each. Then disk use per layer: the layer file, what its Nx cache entry
// (and the blob cache) hold, and dist/ with the cache together.
//
// Usage: node tools/bench/restore.mjs     (npx nx build image-prod first; as root)
//        BLOB_LAYER_MIB=512 node tools/bench/restore.mjs [inline] [blob] [inline-big]
//        (inline-big: the scratch image in inline mode, the same data as blob's side)
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { median, nxBin, nxEnv, nxSync, repo, runs as runsOr, scratchFolder, spread } from './lib.mjs';
import { cacheEntries, diskUse, printDiskUse } from './restore-disk.mjs';

const runs = runsOr(5);
const blobLayerMiB = Number(process.env.BLOB_LAYER_MIB ?? 1024);
/** nx in workspace `root`, with static output to read the cache status of each task from. */
const nx = (root, args, env) => nxSync(root, [...args, '--output-style=static'], env);

/** Fails unless every cacheable task in nx's `output` was a local cache hit (nothing was built). */
function expectOnlyHits(output, what) {
  // image-<x>:build and :pull are not cached: they run every time.
  const tasks = [...output.matchAll(/^> nx run (\S+)(.*)$/gm)].filter(([, id]) => !/^image-[^:]+:(build|pull)$/.test(id));
  const missed = tasks.filter(([, , rest]) => !/\[(local cache|existing outputs match the cache, left as is)\]/.test(rest));
  if (!tasks.length || missed.length) throw new Error(`${what}: expected every layer task to be a local cache hit, got:\n${output}`);
}

/** The task output files of an image folder: each layer's (and the base's) qcow2 or ref, digest, manifest, listing. */
function chainFiles(imageDir) {
  return readdirSync(imageDir)
    .filter((name) => /^(base|[0-9]{2,}_[A-Za-z0-9._-]+)\.(qcow2|ref|digest|manifest\.json|snapshot\.json\.gz)$/.test(name))
    .filter((name) => name !== 'image.qcow2' && lstatSync(path.join(imageDir, name)).isFile())
    .sort();
}

/** The sum of `values`. */
const sum = (values) => values.reduce((total, value) => total + value, 0);
/** Throughput in MB/s of `bytes` in `ms` milliseconds. */
const mbps = (bytes, ms) => bytes / 1e6 / (ms / 1000);

/**
 * One restore comparison: `restore()` (timed, after `clear()`) and, when
 * given, `inPlace()` (the same command with the outputs already there),
 * against `cp` of `sources` into a scratch folder beside `imageDir`.
 */
async function compare({ imageDir, sources, clear, restore, inPlace }) {
  const { dir: scratch, cleanup } = scratchFolder(path.dirname(imageDir), '.bench-restore-');
  const target = path.join(scratch, 'cp');
  const cp = () => {
    rmSync(target, { recursive: true, force: true });
    mkdirSync(target);
    execFileSync('sync');
    const started = process.hrtime.bigint();
    execFileSync('cp', [...sources, target]);
    return Number(process.hrtime.bigint() - started) / 1e6;
  };
  const vmlb = () => {
    clear();
    execFileSync('sync');
    return restore();
  };
  try {
    cp();
    vmlb();
    const times = { cp: [], restore: [], inPlace: [] };
    for (let run = 0; run < runs; run++) {
      const sides = [() => times.cp.push(cp()), () => times.restore.push(vmlb())];
      if (run % 2) sides.reverse();
      for (const side of sides) side();
      if (inPlace) {
        execFileSync('sync');
        times.inPlace.push(inPlace());
      }
    }
    return { times, cpAllocated: sum(readdirSync(target).map((name) => statSync(path.join(target, name)).blocks * 512)) };
  } finally {
    cleanup();
  }
}

/** Inline mode on image `image` of the workspace at `root` (images/prod's chain in this one by default). */
async function inline(root, image, env = {}) {
  const imageDir = path.join(root, 'dist/images', image);
  const files = chainFiles(imageDir);
  const entries = cacheEntries(path.join(root, '.nx/cache'), `dist/images/${image}`, imageDir, files);
  const sources = files.map((name) => path.join(entries.get(name), 'dist/images', image, name));
  const bytes = sum(sources.map((file) => statSync(file).size));
  const build = (daemon) => () => {
    const { ms, output } = nx(root, ['build', `image-${image}`], { ...env, NX_DAEMON: daemon });
    expectOnlyHits(output, `nx build image-${image}`);
    return ms;
  };
  const clear = () => rmSync(imageDir, { recursive: true, force: true });
  // The daemon started and warm before it is timed, as on a developer's machine.
  nx(root, ['build', `image-${image}`], { ...env, NX_DAEMON: 'true' });
  const on = await compare({ imageDir, sources, clear, restore: build('true'), inPlace: build('true') });
  const off = await compare({ imageDir, sources, clear, restore: build('false'), inPlace: build('false') });
  spawnSync(process.execPath, [nxBin, 'daemon', '--stop'], { cwd: root, env: nxEnv });
  return { imageDir, files, entries, sources, bytes, on, off };
}

/** A scratch workspace (in blob mode when `blobs`) whose image `big` has one layer of `mib` MiB of random data, built once. */
function bigWorkspace(mib, blobs) {
  const { dir: root, cleanup } = scratchFolder('/var/tmp', 'vmlb-bench-restore-');
  symlinkSync(path.join(repo, 'node_modules'), path.join(root, 'node_modules'));
  writeFileSync(path.join(root, 'package.json'), '{"name":"vmlb-bench","private":true}\n');
  writeFileSync(path.join(root, '.gitignore'), 'dist\n.nx\nblobs\nblob-cache\n');
  const nxJson = JSON.parse(readFileSync(path.join(repo, 'nx.json'), 'utf8'));
  delete nxJson.$schema;
  Object.assign(nxJson, { cacheDirectory: '.nx/cache', maxCacheSize: '20GB' });
  writeFileSync(path.join(root, 'nx.json'), JSON.stringify(nxJson, null, 2));
  mkdirSync(path.join(root, 'images/big/10_big'), { recursive: true });
  writeFileSync(path.join(root, 'images/big/image.json'), '{"base":{"empty":"3G"}}\n');
  cpSync(path.join(repo, 'images/tiny/00_disk'), path.join(root, 'images/big/00_disk'), { recursive: true });
  writeFileSync(path.join(root, 'images/big/10_big/build-layer'), `#!/bin/sh\nset -eu\ndd if=/dev/urandom of=/big.bin bs=1M count=${mib} 2>/dev/null\n`, {
    mode: 0o755,
  });
  mkdirSync(path.join(root, 'blobs'));
  const env = blobs ? { NX_DAEMON: 'false', VMLB_BLOB_STORE: `file://${root}/blobs`, VMLB_BLOB_CACHE: path.join(root, 'blob-cache') } : { NX_DAEMON: 'false' };
  nx(root, blobs ? ['run', 'image-big:pull'] : ['build', 'image-big'], env);
  return { root, env, cleanup };
}

/** Blob mode: `nx run image-big:pull` after `rm -rf` of the image's dist folder. */
async function blob() {
  const { root, env, cleanup } = bigWorkspace(blobLayerMiB, true);
  try {
    const imageDir = path.join(root, 'dist/images/big');
    const files = chainFiles(imageDir);
    const blobOf = (name) =>
      path.join(env.VMLB_BLOB_CACHE, 'sha256', JSON.parse(readFileSync(path.join(imageDir, name.replace(/\.qcow2$/, '.ref')), 'utf8')).sha256);
    const layers = files.filter((name) => name.endsWith('.qcow2'));
    const sources = layers.map(blobOf);
    const bytes = sum(sources.map((file) => statSync(file).size));
    const pull = () => {
      const { ms, output } = nx(root, ['run', 'image-big:pull'], env);
      expectOnlyHits(output, 'nx run image-big:pull');
      return ms;
    };
    const result = await compare({ imageDir, sources, clear: () => rmSync(imageDir, { recursive: true, force: true }), restore: pull, inPlace: pull });
    // Bytes copied by the restore: a layer that is not the blob cache's inode was copied.
    const copied = sum(layers.map((name) => (statSync(path.join(imageDir, name)).ino === statSync(blobOf(name)).ino ? 0 : statSync(blobOf(name)).size)));
    const entries = cacheEntries(path.join(root, '.nx/cache'), 'dist/images/big', imageDir, chainFiles(imageDir));
    const use = diskUse({ imageDir, files: chainFiles(imageDir), entries, outputDir: 'dist/images/big', blobOf });
    return { ...result, bytes, copied, layers: layers.length, use };
  } finally {
    cleanup();
  }
}

/** Throughput against cp's for the same bytes: cp's time over this one's. */
const ratio = (cpMs, ms) => `${(mbps(1, ms) / mbps(1, cpMs)).toFixed(2)}×`;
/** A table row: time, MB/s and throughput against cp's. */
const row = (what, bytes, times, cpTimes) =>
  `| ${what} | ${spread(times)} | ${mbps(bytes, median(times)).toFixed(0)} | ${ratio(median(cpTimes), median(times))} |`;

const image = process.env.RESTORE_IMAGE ?? 'prod';
// inline: images/prod in this workspace; blob: the scratch image in blob mode; inline-big: the same scratch image inline.
const parts = process.argv.slice(2).length ? process.argv.slice(2) : ['inline', 'blob'];
/** Gigabytes, two decimals. */
const gb = (bytes) => (bytes / 1e9).toFixed(2);
const started = Date.now();

/** Prints inline()'s result for `what`. */
function printInline(what, chain) {
  const cpVersion = execFileSync('cp', ['--version'], { encoding: 'utf8' }).match(/[0-9.]+/)[0];
  const dir = path.relative(path.dirname(path.dirname(path.dirname(chain.imageDir))), chain.imageDir);
  console.log(
    `\ninline: ${what}, ${chain.files.length} files, ${gb(chain.bytes)} GB; ${runs} runs each, taking turns; ` +
      `baseline \`cp <files> <dir>\` from the Nx cache entries (coreutils ${cpVersion}, no flags: its defaults are --reflink=auto --sparse=auto)`,
  );
  console.log('\n| restore into dist/ | s | MB/s | throughput vs cp |');
  console.log('| --- | --- | --- | --- |');
  for (const [label, result] of [
    ['daemon on', chain.on],
    ['daemon off', chain.off],
  ]) {
    const { cp, restore, inPlace } = result.times;
    console.log(row(`\`cp\` of the same files (baseline, ${label} run)`, chain.bytes, cp, cp));
    console.log(row(`\`rm -rf ${dir}\`, then \`nx build\`, Nx ${label}`, chain.bytes, restore, cp));
    console.log(
      row(`the same build, outputs already in place, Nx ${label}${label === 'daemon off' ? ' (Nx copies them again)' : ''}`, chain.bytes, inPlace, cp),
    );
    // With the daemon off Nx cannot tell that the outputs match, and copies them again: no fixed cost to take away.
    if (label === 'daemon off') continue;
    const own = median(restore) - median(inPlace);
    console.log(
      `| the copy alone (restore − in place, medians), Nx ${label} | ${(own / 1000).toFixed(2)} | ${own > 0 ? mbps(chain.bytes, own).toFixed(0) : '–'} | ${own > 0 ? ratio(median(cp), own) : '–'} |`,
    );
  }
  printDiskUse(
    diskUse({
      imageDir: chain.imageDir,
      files: chain.files,
      entries: chain.entries,
      outputDir: dir,
    }),
    chain.on.cpAllocated,
  );
}

if (parts.includes('inline')) {
  if (!existsSync(path.join(repo, 'dist/images', image, 'image.qcow2'))) {
    console.error(`dist/images/${image} is not built: npx nx build image-${image} first.`);
    process.exit(1);
  }
  printInline(`images/${image}`, await inline(repo, image));
}

if (parts.includes('inline-big')) {
  const { root, env, cleanup } = bigWorkspace(blobLayerMiB, false);
  try {
    printInline(`scratch workspace, image big (00_disk, 10_big: ${blobLayerMiB} MiB of random data)`, await inline(root, 'big', env));
  } finally {
    cleanup();
  }
}

if (parts.includes('blob')) {
  const result = await blob();
  console.log(
    `\nblob mode: scratch workspace, image big (00_disk, 10_big: ${blobLayerMiB} MiB of random data), ${result.layers} layer files, ${gb(result.bytes)} GB; ${runs} runs each`,
  );
  console.log('\n| restore into dist/ | s | MB/s | throughput vs cp |');
  console.log('| --- | --- | --- | --- |');
  console.log(row('`cp` of the same layer files from the blob cache (baseline)', result.bytes, result.times.cp, result.times.cp));
  console.log(row('`rm -rf dist/images/big`, then `nx run image-big:pull`', result.bytes, result.times.restore, result.times.cp));
  console.log(row('the same pull, outputs already in place', result.bytes, result.times.inPlace, result.times.cp));
  console.log(`\nBytes the blob-mode restore copied: ${result.copied} (a layer file in dist/ that is not the blob cache's inode counts whole).`);
  printDiskUse(result.use, result.cpAllocated);
}
console.log(`\n(restore: ${Math.round((Date.now() - started) / 1000)} s)`);
