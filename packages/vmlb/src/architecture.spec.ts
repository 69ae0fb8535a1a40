import { readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';

/**
 * The layers of src/lib, lowest first: a folder may import its own level
 * and those below, never one above (docs: CONTRIBUTING.md, "The layout").
 */
const LEVELS: string[][] = [['util'], ['image', 'disk'], ['cache-identity', 'boot'], ['blob', 'export'], ['inspect'], ['build']];

const SRC = __dirname;

/** Every non-spec module of src, as a path relative to src without `.ts`. */
function modules(folder = SRC): string[] {
  return readdirSync(folder).flatMap((entry) => {
    const file = path.join(folder, entry);
    if (statSync(file).isDirectory()) return entry === 'testing' ? [] : modules(file);
    return /(?<!\.spec|\.d)\.ts$/.test(entry) ? [path.relative(SRC, file).slice(0, -3)] : [];
  });
}

/** The src modules a module imports (relative specifiers only; type-only imports count). */
function importsOf(module: string, known: Set<string>): string[] {
  const text = readFileSync(path.join(SRC, `${module}.ts`), 'utf8');
  const specifiers = [...text.matchAll(/(?:from|import|require)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)].map((match) => match[1]);
  return specifiers.map((specifier) => path.relative(SRC, path.resolve(path.dirname(path.join(SRC, module)), specifier))).filter((target) => known.has(target));
}

/** The lib folder of a module, or undefined outside src/lib. */
const libFolder = (module: string) => (module.startsWith('lib/') ? module.split('/')[1] : undefined);
const levelOf = (folder: string) => LEVELS.findIndex((level) => level.includes(folder));

describe('the layout of src', () => {
  const all = modules();
  const known = new Set(all);
  const graph = new Map(all.map((module) => [module, importsOf(module, known)]));

  it('puts every module of src/lib in one of the folders of a level', () => {
    const unplaced = all.filter((module) => module.startsWith('lib/') && levelOf(libFolder(module) ?? '') === -1);
    expect(unplaced).toEqual([]);
  });

  it('has no folder of src/lib import a folder above it', () => {
    const upward = [...graph].flatMap(([module, targets]) => {
      const from = libFolder(module);
      if (!from) return [];
      return targets.filter((target) => levelOf(libFolder(target) ?? 'executors') > levelOf(from)).map((target) => `${module} -> ${target}`);
    });
    expect(upward).toEqual([]);
  });

  it('has no import cycle anywhere in src', () => {
    const cycles: string[] = [];
    const state = new Map<string, 'visiting' | 'done'>();
    const visit = (module: string, trail: string[]) => {
      if (state.get(module) === 'done') return;
      if (state.get(module) === 'visiting') {
        cycles.push([...trail.slice(trail.indexOf(module)), module].join(' -> '));
        return;
      }
      state.set(module, 'visiting');
      graph.get(module)!.forEach((target) => visit(target, [...trail, module]));
      state.set(module, 'done');
    };
    all.forEach((module) => visit(module, []));
    expect(cycles).toEqual([]);
  });
});
