import { findImageFolders } from './image-folders';

/** findImageFolders over the given files, reading image.json texts from `texts`. */
function imageFolders(texts: Record<string, string>, scripts: string[] = []): Record<string, string> {
  return Object.fromEntries(findImageFolders([...Object.keys(texts), ...scripts], (file) => texts[file]));
}

describe('findImageFolders', () => {
  it('takes every folder under images/ with an image.json, valid or not, reported against its image.json', () => {
    expect(
      imageFolders({ 'images/prod/image.json': '{"base": {"empty": "4G"}}', 'images/broken/image.json': '{ nope' }, ['images/prod/00_base/modify-disk']),
    ).toEqual({
      'images/broken': 'images/broken/image.json',
      'images/prod': 'images/prod/image.json',
    });
  });

  it('takes a folder anywhere whose image.json names a base', () => {
    expect(imageFolders({ 'infra/vm/web/image.json': '{"base": {"path": "golden.qcow2"}}' })).toEqual({ 'infra/vm/web': 'infra/vm/web/image.json' });
  });

  it("leaves another tool's image.json alone", () => {
    expect(imageFolders({ 'apps/site/assets/image.json': '{"width": 640}', 'apps/site/logo/image.json': '[1, 2]', 'apps/x/image.json': 'not json' })).toEqual(
      {},
    );
  });

  it('takes a folder anywhere with a layer folder, so that a missing or odd image.json is reported', () => {
    expect(imageFolders({ 'infra/vm/db/image.json': '{"name": "db"}' }, ['infra/vm/db/10_pg/build-layer', 'infra/vm/cache/00_disk/modify-disk'])).toEqual({
      'infra/vm/cache': 'infra/vm/cache/00_disk/modify-disk',
      'infra/vm/db': 'infra/vm/db/image.json',
    });
  });

  it('ignores a build-layer file that is not in a layer folder', () => {
    expect(imageFolders({}, ['tools/scripts/build-layer', 'build-layer'])).toEqual({});
  });
});
