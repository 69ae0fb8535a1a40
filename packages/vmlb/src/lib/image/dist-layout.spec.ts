import { digestPathFor, manifestPathFor, partialPathFor, refPathFor, snapshotPathFor, staleLayerFiles, workFolderFor, workFoldersIn } from './dist-layout';

describe("a layer's companion files", () => {
  it('sit beside its qcow2, named by suffix', () => {
    const qcow2 = 'dist/images/prod/10_update.qcow2';
    expect([digestPathFor(qcow2), manifestPathFor(qcow2), snapshotPathFor(qcow2), refPathFor(qcow2)]).toEqual([
      'dist/images/prod/10_update.digest',
      'dist/images/prod/10_update.manifest.json',
      'dist/images/prod/10_update.snapshot.json.gz',
      'dist/images/prod/10_update.ref',
    ]);
  });

  it('are written as hidden partial files first, one per writer when given', () => {
    expect(partialPathFor('/w/dist/images/prod/base.qcow2')).toBe('/w/dist/images/prod/.base.qcow2.partial');
    expect(partialPathFor('/w/export/prod.ova', '1234.abcdef')).toBe('/w/export/.prod.ova.1234.abcdef.partial');
  });

  it("have a work folder per layer build under the image's .vmlb folder", () => {
    expect(workFoldersIn('/w/dist/images/prod')).toBe('/w/dist/images/prod/.vmlb');
    expect(workFolderFor('/w/dist/images/prod', '10_update')).toBe('/w/dist/images/prod/.vmlb/10_update');
  });
});

describe('staleLayerFiles', () => {
  it('lists the files of layers the image no longer has, and nothing else', () => {
    const names = [
      'base.qcow2',
      'base.digest',
      'base.manifest.json',
      'image.qcow2',
      'image.qcow2.sha256',
      'export',
      '.vmlb',
      '.20_banner.qcow2.partial',
      '10_hello.qcow2',
      '10_hello.digest',
      '20_banner.qcow2',
      '20_banner.snapshot.json.gz',
      '20_motd.qcow2',
      '20_motd.digest',
      '20_motd.manifest.json',
      '20_motd.snapshot.json.gz',
      '20_motd.ref',
      // A layer whose name has a dot, and an old one whose name starts like it.
      '30_app.v2.qcow2',
      '30_app.qcow2',
    ];
    expect(staleLayerFiles(names, ['10_hello', '20_banner', '30_app.v2'])).toEqual([
      '20_motd.digest',
      '20_motd.manifest.json',
      '20_motd.qcow2',
      '20_motd.ref',
      '20_motd.snapshot.json.gz',
      '30_app.qcow2',
    ]);
  });

  it('finds none when every layer file belongs to a layer', () => {
    expect(staleLayerFiles(['00_disk.qcow2', '00_disk.digest', 'base.qcow2', 'image.qcow2'], ['00_disk'])).toEqual([]);
  });
});
