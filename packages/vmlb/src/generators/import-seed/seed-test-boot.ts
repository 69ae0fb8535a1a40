import { readFileSync } from 'node:fs';
import type { ImportReport } from './import-report';
import type { SeedFile } from './seed-checkout';

/** A file for the image's test-boot/ folder. */
export interface TestBootFile {
  name: string;
  content: Buffer;
}

export interface ImportedTestBoot {
  files: TestBootFile[];
  /** image.json's `testBoot`, from what bin/test-boot gave qemu. */
  settings?: { memory: string };
}

/** The original's cloud-init seed files, and vmlb's names for them (`nx run image-<x>:test-boot` serves these). */
const SEED_NAMES: Record<string, string> = {
  'user-data.yaml': 'user-data',
  'meta-data.yaml': 'meta-data',
  'vendor-data.yaml': 'vendor-data',
  'user-data.yml': 'user-data',
  'meta-data.yml': 'meta-data',
  'vendor-data.yml': 'vendor-data',
};

/**
 * The original booted with a cloud-init disk made by cloud-localds from
 * test-boot/*.yaml; vmlb serves test-boot/user-data and meta-data to the
 * guest over HTTP, so the seeds are renamed and the disk is not needed.
 */
export function importTestBoot(files: SeedFile[], testBootScript: string | undefined, image: string, report: ImportReport): ImportedTestBoot {
  const imported: TestBootFile[] = [];
  for (const file of files) {
    const source = `test-boot/${file.relative}`;
    if (file.type !== 'file') {
      report.note(source, `not imported: a ${file.type}.`);
      continue;
    }
    if (/\.(img|iso)$/.test(file.relative)) {
      report.note(source, 'not imported: vmlb serves test-boot/user-data and meta-data to the guest itself, so no cloud-init disk is made or needed.');
      continue;
    }
    const name = SEED_NAMES[file.relative] ?? file.relative;
    if (name !== file.relative) {
      report.changed(source, undefined, undefined, [`test-boot/${name}`], `renamed: vmlb's test-boot serves test-boot/${name} as the NoCloud seed's ${name}.`);
    }
    imported.push({ name, content: readFileSync(file.absolute) });
  }
  const userData = imported.find((file) => file.name === 'user-data');
  if (userData && !userData.content.toString('utf8').includes('${VMLB_SSH_PUBLIC_KEY}')) {
    report.note(
      'test-boot/user-data.yaml',
      `\`nx run image-${image}:test-boot --check --ssh <command>\` logs in as vmlb with a key made for the boot: to use it, add a user 'vmlb' whose ssh_authorized_keys lists \${VMLB_SSH_PUBLIC_KEY} (see images/prod/test-boot/user-data). Booting and --check without --ssh work as they are.`,
    );
  }
  const memory = testBootScript && /(?:^|\s)-m\s+([0-9]+)([MG]?)\b/.exec(testBootScript);
  if (memory) {
    const size = `${memory[1]}${memory[2] || 'M'}`;
    report.changed(
      'bin/test-boot',
      lineOf(testBootScript!, memory.index),
      undefined,
      [`image.json: "testBoot": { "memory": "${size}" }`],
      `the guest's memory in vmlb's test-boot.`,
    );
    return { files: imported, settings: { memory: size } };
  }
  return { files: imported };
}

/** The 1-based line of a character, for the report. */
function lineOf(text: string, index: number): number {
  return text.slice(0, index + 1).split('\n').length;
}
