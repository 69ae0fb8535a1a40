import { type Dirent, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { type Tree, logger } from '@nx/devkit';
import { type ImageBase, newImageRoot, warnIfMissing, writeCheckedImageConfig } from '../image/generator';
import { formatFilesKeepingModes } from '../generator-utils';
import { initGenerator } from '../init/generator';
import { ImportReport, formatReport } from './import-report';
import { chooseBase } from './seed-base';
import { type SeedCheckout, type SeedLayer, readCheckout, vmlbLayerNames } from './seed-checkout';
import { importScript } from './script-rewrite';
import { type ImportedTestBoot, importTestBoot } from './seed-test-boot';
import { qcowCompatLines } from './sconstruct';
import type { ImportSeedGeneratorSchema } from './schema';

interface NormalizedImportOptions {
  checkout: SeedCheckout;
  name: string;
  imageRoot: string;
  base: ImageBase;
  skipFormat: boolean;
  report: ImportReport;
}

/** `nx g vmlb:import-seed <checkout> --image <name>`: a vm-layer-builder checkout as a vmlb image, with a report of every line it changed or left. */
export async function importSeedGenerator(tree: Tree, schema: ImportSeedGeneratorSchema): Promise<void> {
  const options = normalizeOptions(tree, schema);
  await initGenerator(tree, { skipFormat: true });
  importLayers(tree, options);
  const testBoot = importSeedTestBoot(tree, options);
  writeImageConfig(tree, options, testBoot);
  noteWholeCheckout(options);
  if (!options.skipFormat) await formatFilesKeepingModes(tree);
  printReport(options);
}

export default importSeedGenerator;

/** Reads the checkout and picks the base before anything is written, so a refusal leaves the workspace as it was. */
function normalizeOptions(tree: Tree, schema: ImportSeedGeneratorSchema): NormalizedImportOptions {
  if (schema.checkout === undefined || String(schema.checkout).trim() === '') {
    throw new Error('Give the vm-layer-builder checkout to import: nx g vmlb:import-seed <folder> --image <name>');
  }
  if (schema.image === undefined || String(schema.image).trim() === '') {
    throw new Error(`Give the new image's name: nx g vmlb:import-seed ${schema.checkout} --image <name>`);
  }
  const name = String(schema.image).trim();
  const imageRoot = newImageRoot(tree, name, schema.directory);
  const checkout = readCheckout(path.resolve(String(schema.checkout)));
  const report = new ImportReport();
  const base = chooseBase({ baseUrl: schema.baseUrl, sha256: schema.sha256, basePath: schema.basePath }, checkout.sconstruct, checkout.root, report);
  if ('path' in base) warnIfMissing(tree, imageRoot, base.path);
  return { checkout, name, imageRoot, base, skipFormat: schema.skipFormat ?? false, report };
}

/** Each layer folder with its files and modes, the script rewritten, under vmlb's name for it. */
function importLayers(tree: Tree, options: NormalizedImportOptions): void {
  const { checkout, imageRoot, report } = options;
  const names = vmlbLayerNames(checkout.layers.map((layer) => layer.folder));
  checkout.layers.forEach((layer, index) => {
    const { folder, why } = names[index];
    if (why) report.changed(layer.folder, undefined, undefined, [`${folder}/`], why);
    const target = path.posix.join(imageRoot, folder);
    copyLayerFiles(tree, layer, target, report);
    const scriptFile = `${layer.folder}/${layer.kind}`;
    const scriptSource = layer.files.find((file) => file.relative === layer.kind)!;
    const imported = importScript(
      readFileSync(scriptSource.absolute, 'utf8'),
      { kind: layer.kind, layerFolder: layer.folder, file: scriptFile, exists: (relative) => existsIn(checkout, relative) },
      report,
    );
    if ((scriptSource.mode & 0o111) === 0) {
      report.changed(
        scriptFile,
        undefined,
        undefined,
        [`${scriptFile} (executable)`],
        'the original ran it, so it was meant to be executable; vmlb refuses a script that is not.',
      );
    }
    tree.write(path.posix.join(target, layer.kind), imported.text, { mode: scriptSource.mode | 0o755 });
    for (const copy of imported.copies) copyFromCheckout(tree, checkout, copy.from, path.posix.join(target, copy.to));
  });
}

/** The layer folder's files but its script, with their modes; what cannot be imported is reported. */
function copyLayerFiles(tree: Tree, layer: SeedLayer, target: string, report: ImportReport): void {
  for (const file of layer.files) {
    const source = `${layer.folder}/${file.relative}`;
    if (file.relative === layer.kind) continue;
    if (file.relative === layer.ignored) {
      tree.write(path.posix.join(target, `${file.relative}.unused`), readFileSync(file.absolute), { mode: file.mode & 0o644 });
      report.changed(
        source,
        undefined,
        undefined,
        [`${source}.unused`],
        `the original ran build-layer and never this modify-disk; vmlb refuses a folder with both, so it is kept under another name, not executable. Move it into a layer of its own to run it.`,
      );
      continue;
    }
    if (file.type !== 'file') {
      report.note(
        source,
        `not imported: a ${file.type}, which a generator cannot write. ${file.type === 'symlink' ? 'Copy the file it points to in its place' : 'Create it in the layer folder'} if the script needs it.`,
      );
      continue;
    }
    tree.write(path.posix.join(target, file.relative), readFileSync(file.absolute), { mode: file.mode });
  }
}

/** test-boot/'s seeds under the names vmlb's test-boot serves. */
function importSeedTestBoot(tree: Tree, options: NormalizedImportOptions): ImportedTestBoot {
  const testBoot = importTestBoot(options.checkout.testBoot, options.checkout.testBootScript, options.name, options.report);
  for (const file of testBoot.files) tree.write(path.posix.join(options.imageRoot, 'test-boot', file.name), file.content);
  return testBoot;
}

/** image.json: the base, and the test-boot settings bin/test-boot gave. */
function writeImageConfig(tree: Tree, options: NormalizedImportOptions, testBoot: ImportedTestBoot): void {
  const compat = importedQcow2Compat(options);
  const config = { base: options.base, ...(compat ? { qcow2Compat: compat } : {}), ...(testBoot.settings ? { testBoot: testBoot.settings } : {}) };
  writeCheckedImageConfig(tree, options.imageRoot, config, 'vmlb:import-seed');
}

/** A file or folder of the checkout, copied with its modes (a bind mount's source that was beside the layer folder). */
function copyFromCheckout(tree: Tree, checkout: SeedCheckout, from: string, to: string): void {
  const absolute = path.join(checkout.root, from);
  const files = statSync(absolute).isDirectory()
    ? (readdirSync(absolute, { recursive: true, withFileTypes: true }) as Dirent[])
        .filter((entry) => entry.isFile())
        .map((entry) => path.join(entry.parentPath, entry.name))
    : [absolute];
  for (const file of files) {
    const relative = path.relative(absolute, file);
    tree.write(relative ? path.posix.join(to, relative) : to, readFileSync(file), { mode: statSync(file).mode & 0o7777 });
  }
}

/** Whether a checkout-relative path exists, for the hint rules, which see no files. */
function existsIn(checkout: SeedCheckout, relative: string): boolean {
  return existsSync(path.join(checkout.root, relative));
}

/** image.json's qcow2Compat: the one level SConstruct's lines ask for, when vmlb knows it. */
function importedQcow2Compat({ checkout }: Pick<NormalizedImportOptions, 'checkout'>): string | undefined {
  const levels = [...new Set(qcowCompatLines(checkout.sconstruct).map((line) => line.compat))];
  return levels.length === 1 && (levels[0] === '0.10' || levels[0] === '1.1') ? levels[0] : undefined;
}

/** What the checkout holds beside its layers, and what vmlb does instead. */
function noteWholeCheckout({ checkout, name, report }: NormalizedImportOptions): void {
  const compat = importedQcow2Compat({ checkout });
  for (const line of qcowCompatLines(checkout.sconstruct)) {
    if (line.compat === compat) {
      report.changed(
        'SConstruct',
        line.line,
        line.text,
        [`"qcow2Compat": "${compat}" in image.json`],
        'vmlb writes every layer, the base and qcow2 exports at the level image.json names',
      );
    } else {
      report.unconverted(
        'SConstruct',
        line.line,
        line.text,
        `the original wrote qcow2 compat=${line.compat}, and another line asks for another level; vmlb writes one level per image: set "qcow2Compat" ("0.10" or "1.1") in ${name}'s image.json.`,
      );
    }
  }
  for (const folder of checkout.skipped)
    report.note(`${folder}/`, 'not imported: it has no build-layer or modify-disk, so the original skipped it, and vmlb would refuse it.');
  for (const folder of checkout.others) {
    report.note(`${folder}/`, `not imported: not a layer folder. If a layer uses it, copy it into that layer's folder.`);
  }
  if (checkout.s3Cache) {
    report.note(
      'site_scons/s3_cache.py',
      'not imported: vmlb shares layers through an Nx remote cache (docs/remote-cache.md), so set one up for CI and the team instead of the S3 bucket.',
    );
  }
}

/** The report, then what to do next: the user sees every change and every line left before building. */
function printReport({ checkout, name, imageRoot, report }: NormalizedImportOptions): void {
  const layers = checkout.layers.length;
  logger.info(formatReport(report, `vmlb:import-seed: ${checkout.root} → ${imageRoot}/ (${layers} layer${layers === 1 ? '' : 's'})`));
  const todo = report.of('unconverted').length;
  logger.info(
    todo
      ? `\n${todo} thing${todo === 1 ? '' : 's'} left to do: grep -rn 'vmlb-import:' ${imageRoot} lists those in the scripts. Then: nx build image-${name}`
      : `\nNext: nx build image-${name}`,
  );
}
