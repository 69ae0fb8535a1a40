// Disk use of a restored chain, for tools/bench/restore.mjs: per layer, the
// layer file's size, what its Nx cache entry (and in blob mode the blob
// cache) hold on disk, and dist/ with the caches together (a file linked in
// several places counted once).
import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';

/** A layer file's name without its suffix (`10_update.qcow2` → `10_update`). */
const stem = (name) => name.replace(/\.(qcow2|ref|digest|manifest\.json|snapshot\.json\.gz)$/, '');

/**
 * The Nx cache entry (`<cacheDir>/<task hash>`) each of `files` (names in
 * `imageDir`, whose workspace-relative folder is `outputDir`) was restored
 * from: the entry whose copy of the layer's digest says what dist/'s does.
 */
export function cacheEntries(cacheDir, outputDir, imageDir, files) {
  const byLayer = new Map();
  for (const hash of readdirSync(cacheDir).filter((name) => /^[0-9]+$/.test(name))) {
    const folder = path.join(cacheDir, hash, outputDir);
    if (!existsSync(folder)) continue;
    for (const name of readdirSync(folder).filter((file) => file.endsWith('.digest'))) {
      const ours = path.join(imageDir, name);
      if (existsSync(ours) && readFileSync(ours, 'utf8') === readFileSync(path.join(folder, name), 'utf8')) byLayer.set(stem(name), path.join(cacheDir, hash));
    }
  }
  const entries = new Map();
  for (const name of files) {
    const entry = byLayer.get(stem(name));
    if (!entry) throw new Error(`No Nx cache entry in ${cacheDir} holds ${outputDir}/${name} as dist/ has it: is the chain built and cached?`);
    entries.set(name, entry);
  }
  return entries;
}

/** Every regular file under `dir` (or `dir` itself when it is a file). */
function filesUnder(dir) {
  const stats = lstatSync(dir, { throwIfNoEntry: false });
  if (!stats) return [];
  if (!stats.isDirectory()) return stats.isFile() ? [dir] : [];
  return readdirSync(dir).flatMap((name) => filesUnder(path.join(dir, name)));
}

/** Bytes allocated on disk for `files`, each inode counted once across calls sharing `seen`. */
function allocated(files, seen = new Set()) {
  let bytes = 0;
  for (const file of files) {
    const stats = lstatSync(file);
    const key = `${stats.dev}:${stats.ino}`;
    if (seen.has(key)) continue;
    seen.add(key);
    bytes += stats.blocks * 512;
  }
  return bytes;
}

/**
 * Per layer: `size` (the qcow2's length), `dist` (allocated in dist/),
 * `entry` (allocated by its whole Nx cache entry and terminal output),
 * `blob` (allocated in the blob cache, blob mode), `links` (names of the
 * dist/ file); and `together`: dist/, the entries and the blobs, each
 * inode once.
 */
export function diskUse({ imageDir, files, entries, outputDir, blobOf }) {
  const layers = [...new Set(files.map(stem))];
  const seen = new Set();
  const rows = layers.map((layer) => {
    const qcow2 = path.join(imageDir, `${layer}.qcow2`);
    const blob = blobOf ? blobOf(`${layer}.qcow2`) : undefined;
    const entry = entries.get(files.find((name) => stem(name) === layer));
    const terminal = path.join(path.dirname(entry), 'terminalOutputs', path.basename(entry));
    const entryFiles = [...filesUnder(entry), ...filesUnder(terminal)];
    const distFiles = files.filter((name) => stem(name) === layer).map((name) => path.join(imageDir, name));
    const qcow2Stats = lstatSync(blob ?? qcow2);
    return {
      layer,
      size: qcow2Stats.size,
      dist: allocated(distFiles),
      links: lstatSync(existsSync(qcow2) ? qcow2 : distFiles[0]).nlink,
      entry: allocated(entryFiles),
      entryQcow2: allocated(entryFiles.filter((file) => file.endsWith(path.join(outputDir, `${layer}.qcow2`)))),
      entryFiles: entryFiles.length,
      blob: blob ? allocated([blob]) : 0,
      // For `together`: the same files again, each inode counted once over the whole chain.
      unique: allocated([...distFiles, ...entryFiles, ...(blob ? [blob] : [])], seen),
    };
  });
  return { rows, together: rows.reduce((total, row) => total + row.unique, 0), blobMode: Boolean(blobOf) };
}

/** Megabytes, one decimal. */
const mb = (bytes) => (bytes / 1e6).toFixed(1);

/** Prints diskUse()'s result as a table; `cpAllocated` is what the baseline's copy of the same files holds. */
export function printDiskUse({ rows, together, blobMode }, cpAllocated) {
  console.log(
    `\n| layer | qcow2, MB | in dist/, MB (links) | Nx cache entry, MB (files; of it the qcow2) | ${blobMode ? 'blob cache, MB | ' : ''}cache / qcow2 |`,
  );
  console.log(`| --- | --- | --- | --- | ${blobMode ? '--- | ' : ''}--- |`);
  for (const row of rows) {
    const cache = row.entry + row.blob;
    console.log(
      `| ${row.layer} | ${mb(row.size)} | ${mb(row.dist)} (${row.links}) | ${mb(row.entry)} (${row.entryFiles}; ${mb(row.entryQcow2)}) | ${blobMode ? `${mb(row.blob)} | ` : ''}${(cache / row.size).toFixed(3)}× |`,
    );
  }
  const size = rows.reduce((total, row) => total + row.size, 0);
  const cache = rows.reduce((total, row) => total + row.entry + row.blob, 0);
  console.log(
    `\nAll layers: qcow2 files ${mb(size)} MB; the cache ${mb(cache)} MB (${(cache / size).toFixed(3)}×); dist/ and the cache together ${mb(together)} MB (${(together / size).toFixed(2)}×, each inode once); \`cp\`'s copy of the same files ${mb(cpAllocated)} MB allocated.`,
  );
}
