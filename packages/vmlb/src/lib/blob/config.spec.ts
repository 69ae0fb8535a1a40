import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { blobModeSetting, blobStoreOptionFromNxJson, openBlobStores } from './config';

let workspace: string;
const writeNxJson = (plugins: unknown[]) => fs.writeFileSync(path.join(workspace, 'nx.json'), JSON.stringify({ plugins }));

beforeEach(() => {
  workspace = fs.mkdtempSync(path.join(os.tmpdir(), 'vmlb-blob-config-'));
});
afterEach(() => fs.rmSync(workspace, { recursive: true, force: true }));

describe('blob mode configuration', () => {
  it('is off unless the plugin option or VMLB_BLOB_STORE names a store, and the variable wins', () => {
    expect(blobModeSetting(undefined, {})).toBeUndefined();
    expect(blobModeSetting('s3://a/b', {})).toBe('s3://a/b');
    expect(blobModeSetting('s3://a/b', { VMLB_BLOB_STORE: 'file:///srv/blobs' })).toBe('file:///srv/blobs');
    expect(blobModeSetting(undefined, { VMLB_BLOB_STORE: '' })).toBeUndefined();
  });

  it('reads the vmlb entry of nx.json and ignores other plugins', () => {
    writeNxJson(['@nx/js', { plugin: 'other', options: { blobStore: 'x' } }, { plugin: 'vmlb', options: { blobStore: 'local' } }]);
    expect(blobStoreOptionFromNxJson(workspace)).toBe('local');
    writeNxJson([{ plugin: 'vmlb' }]);
    expect(blobStoreOptionFromNxJson(workspace)).toBeUndefined();
  });

  it('names nx.json and the accepted forms when blobStore is not a string', () => {
    writeNxJson([{ plugin: 'vmlb', options: { blobStore: { url: 's3://a' } } }]);
    expect(() => blobStoreOptionFromNxJson(workspace)).toThrow("nx.json: the vmlb plugin's blobStore option must be a string");
  });

  it('opens only the local blob cache for "local", and the shared store as well for a URL', async () => {
    writeNxJson([{ plugin: 'vmlb', options: { blobStore: 'local' } }]);
    const cacheDir = path.join(workspace, 'blob-cache');
    const local = await openBlobStores(workspace, { VMLB_BLOB_CACHE: cacheDir });
    expect(local.local.root).toBe(cacheDir);
    expect(local.remote).toBeUndefined();
    const shared = path.join(workspace, 'shared');
    fs.mkdirSync(shared);
    const both = await openBlobStores(workspace, { VMLB_BLOB_CACHE: cacheDir, VMLB_BLOB_STORE: `file://${shared}` });
    expect(both.remote?.url).toBe(`file://${shared}`);
  });
});
