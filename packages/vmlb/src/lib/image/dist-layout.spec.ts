import { staleLayerFiles } from './dist-layout';

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
