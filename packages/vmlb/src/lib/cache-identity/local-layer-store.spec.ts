import * as fs from 'node:fs';
import * as path from 'node:path';
import { TempWorkspace } from '../../testing/temp-workspace';
import { digestPathFor } from '../image/dist-layout';
import { LocalLayerStore } from './local-layer-store';

const PARENT = 'a'.repeat(64);
const OTHER_PARENT = 'b'.repeat(64);

let workspace: TempWorkspace;
let dist: string;
let store: LocalLayerStore;

beforeEach(() => {
  workspace = new TempWorkspace();
  dist = workspace.mkdir('dist');
  store = new LocalLayerStore(workspace.path('store'), 2);
});

afterEach(() => workspace.remove());

/** A built layer in dist/: its overlay bytes (the store copies them as they are) and digest file. */
function builtLayer(name: string, content: string, digest: string): string {
  const output = workspace.write(`dist/${name}.qcow2`, content);
  workspace.write(`dist/${name}.digest`, `${digest}\n`);
  return output;
}

const files = (output: string) => ({ file: output, digestFile: digestPathFor(output) });

describe('LocalLayerStore', () => {
  it('misses on an empty store', async () => {
    await expect(store.restore('123', files(path.join(dist, 'x.qcow2')), PARENT)).resolves.toEqual({ outcome: 'miss' });
  });

  it('restores a stored layer byte for byte into an empty dist/', async () => {
    const output = builtLayer('10_a', 'overlay bytes', 'c'.repeat(64));
    await store.save('123', 'img-10_a', files(output), PARENT);
    fs.rmSync(output);
    fs.rmSync(digestPathFor(output));

    const { outcome, entry } = await store.restore('123', files(output), PARENT);
    expect(outcome).toBe('restored');
    expect(entry).toMatchObject({ project: 'img-10_a', digest: 'c'.repeat(64), parentDigest: PARENT, size: 13 });
    expect(fs.readFileSync(output, 'utf8')).toBe('overlay bytes');
    expect(fs.readFileSync(digestPathFor(output), 'utf8')).toBe(`${'c'.repeat(64)}\n`);
    expect(fs.readdirSync(dist).sort()).toEqual(['10_a.digest', '10_a.qcow2']);
  });

  it("keeps the layer's manifest with it and puts it back on restore", async () => {
    const output = builtLayer('10_a', 'overlay bytes', 'c'.repeat(64));
    const manifestFile = path.join(dist, '10_a.manifest.json');
    fs.writeFileSync(manifestFile, '{"kind":"build-layer"}\n');
    await store.save('123', 'img-10_a', { ...files(output), manifestFile }, PARENT);
    fs.rmSync(dist, { recursive: true });
    fs.mkdirSync(dist);

    await expect(store.restore('123', { ...files(output), manifestFile }, PARENT)).resolves.toMatchObject({ outcome: 'restored' });
    expect(fs.readFileSync(manifestFile, 'utf8')).toBe('{"kind":"build-layer"}\n');
    expect(fs.readdirSync(dist).sort()).toEqual(['10_a.digest', '10_a.manifest.json', '10_a.qcow2']);
  });

  it('restores an entry stored without a manifest, leaving no stale manifest behind', async () => {
    const output = builtLayer('10_a', 'overlay bytes', 'c'.repeat(64));
    await store.save('123', 'img-10_a', files(output), PARENT);
    fs.rmSync(output);
    const manifestFile = path.join(dist, '10_a.manifest.json');
    fs.writeFileSync(manifestFile, '{"from":"another build"}');
    await expect(store.restore('123', { ...files(output), manifestFile }, PARENT)).resolves.toMatchObject({ outcome: 'restored' });
    expect(fs.existsSync(manifestFile)).toBe(false);
  });

  it('copies rather than links, so a later change in dist/ cannot alter the stored layer', async () => {
    const output = builtLayer('10_a', 'overlay bytes', 'c'.repeat(64));
    await store.save('123', 'img-10_a', files(output), PARENT);
    fs.writeFileSync(output, 'changed in place');
    fs.rmSync(digestPathFor(output));
    await store.restore('123', files(output), PARENT);
    expect(fs.readFileSync(output, 'utf8')).toBe('overlay bytes');
  });

  it('reports up-to-date without copying when dist/ already holds the same layer', async () => {
    const output = builtLayer('10_a', 'overlay bytes', 'c'.repeat(64));
    await store.save('123', 'img-10_a', files(output), PARENT);
    const inode = fs.statSync(output).ino;
    await expect(store.restore('123', files(output), PARENT)).resolves.toMatchObject({ outcome: 'up-to-date' });
    expect(fs.statSync(output).ino).toBe(inode);
  });

  it('refuses (and drops) an entry built on another parent', async () => {
    const output = builtLayer('10_a', 'overlay bytes', 'c'.repeat(64));
    await store.save('123', 'img-10_a', files(output), PARENT);
    await expect(store.restore('123', files(output), OTHER_PARENT)).resolves.toEqual({ outcome: 'miss' });
    expect(await store.entries()).toEqual([]);
  });

  it('refuses a truncated entry', async () => {
    const output = builtLayer('10_a', 'overlay bytes', 'c'.repeat(64));
    await store.save('123', 'img-10_a', files(output), PARENT);
    fs.truncateSync(path.join(store.root, '123', 'layer'), 4);
    fs.rmSync(output);
    await expect(store.restore('123', files(output), PARENT)).resolves.toEqual({ outcome: 'miss' });
    expect(fs.existsSync(output)).toBe(false);
  });

  it('ignores a half-written entry (no entry.json) and leftover staging folders', async () => {
    fs.mkdirSync(path.join(store.root, '123'), { recursive: true });
    fs.writeFileSync(path.join(store.root, '123', 'layer'), 'partial');
    fs.mkdirSync(path.join(store.root, '.456.99.abcd.tmp'));
    await expect(store.restore('123', files(path.join(dist, '10_a.qcow2')), PARENT)).resolves.toEqual({ outcome: 'miss' });
    expect(await store.entries()).toEqual([]);
  });

  it('keeps only the most recently used entries of each layer', async () => {
    const output = builtLayer('10_a', 'v1', 'c'.repeat(64));
    const other = builtLayer('10_b', 'other layer', 'e'.repeat(64));
    await store.save('1', 'img-10_a', files(output), PARENT);
    await store.save('9', 'img-10_b', files(other), PARENT);
    await new Promise((resolve) => setTimeout(resolve, 20));
    await store.save('2', 'img-10_a', files(output), PARENT);
    await new Promise((resolve) => setTimeout(resolve, 20));
    // Using entry 1 makes entry 2 the least recently used one of img-10_a.
    await store.restore('1', files(output), PARENT);
    await new Promise((resolve) => setTimeout(resolve, 20));
    await store.save('3', 'img-10_a', files(output), PARENT);
    expect((await store.entries()).map((entry) => entry.key).sort()).toEqual(['1', '3', '9']);
  });

  it('rejects a key that is not a task hash, naming it', async () => {
    const output = builtLayer('10_a', 'v1', 'c'.repeat(64));
    await expect(store.save('../escape', 'img-10_a', files(output), PARENT)).rejects.toThrow("'../escape' is not a task hash");
    expect(fs.existsSync(workspace.path('escape'))).toBe(false);
  });
});
