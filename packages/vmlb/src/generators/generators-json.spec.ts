import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';

const PACKAGE_ROOT = path.join(__dirname, '..', '..');

interface GeneratorEntry {
  factory: string;
  schema: string;
  description?: string;
}

interface SchemaProperty {
  description?: string;
  $default?: { $source: string; index?: number };
}

const generatorsJson: { generators: Record<string, GeneratorEntry> } = JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'generators.json'), 'utf8'));
const entries = Object.entries(generatorsJson.generators);
const readSchema = (entry: GeneratorEntry) => JSON.parse(readFileSync(path.join(PACKAGE_ROOT, entry.schema), 'utf8'));

describe('generators.json', () => {
  it('is what package.json points at', () => {
    expect(JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')).generators).toBe('./generators.json');
  });

  it('lists every generator folder', () => {
    const folders = readdirSync(__dirname).filter((entry) => statSync(path.join(__dirname, entry)).isDirectory());
    expect(Object.keys(generatorsJson.generators).sort()).toEqual(folders.sort());
  });

  describe.each(entries)('%s', (name, entry) => {
    it('points at the compiled generator with an explicit .js, so Nx does not transpile the TS source per run', () => {
      expect(entry.factory).toBe(`./dist/generators/${name}/generator.js`);
      // tsc compiles src/ to dist/ (rootDir src), so this is the file it comes from.
      expect(existsSync(path.join(PACKAGE_ROOT, 'src', 'generators', name, 'generator.ts'))).toBe(true);
    });

    it('has a generator function as its default export', () => {
      const loaded: { default?: unknown } = require(`./${name}/generator`);
      expect(typeof loaded.default).toBe('function');
    });

    // import-seed → importSeedGenerator
    const exported = `${name.replace(/-([a-z])/g, (_dash, letter: string) => letter.toUpperCase())}Generator`;
    it(`exports the same function as ${exported}, which its spec tests`, () => {
      const loaded: Record<string, unknown> = require(`./${name}/generator`);
      expect(loaded.default).toBe(loaded[exported]);
    });

    it('has a description', () => {
      expect(entry.description).toEqual(expect.any(String));
    });

    it('has a schema that describes every option', () => {
      expect(entry.schema).toBe(`./src/generators/${name}/schema.json`);
      const schema = readSchema(entry);
      expect(schema).toMatchObject({ type: 'object', additionalProperties: false, description: expect.any(String) });
      for (const [option, property] of Object.entries<SchemaProperty>(schema.properties)) {
        expect([option, property.description]).toEqual([option, expect.any(String)]);
      }
      for (const option of schema.required ?? []) expect(schema.properties).toHaveProperty([option]);
    });
  });

  it.each(entries.filter(([, entry]) => readSchema(entry).properties.name))('%s takes its name as the first positional argument', (_name, entry) => {
    expect(readSchema(entry).properties.name.$default).toEqual({ $source: 'argv', index: 0 });
  });

  it('gives every schema its own $id', () => {
    const ids = entries.map(([, entry]) => readSchema(entry).$id);
    expect(new Set(ids).size).toBe(ids.length);
  });
});
