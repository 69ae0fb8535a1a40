import { parseSeedBase, qcowCompatLines } from './sconstruct';

describe('parseSeedBase', () => {
  it('reads download_base_image(): the URL formatted with base_name, and the MD5 of the decompressed file', () => {
    const sconstruct = [
      'def download_base_image():',
      "    base_name = 'CentOS-6-x86_64-GenericCloud-1510.qcow2'",
      "    image = 'build/%s' % base_name",
      "    md5sum = 'FE5C8D4469E6925D6CBB20B830B9D1AC'",
      '    dl_env.Command(image, \'/bin/true\', """',
      'cd build && curl --silent -O http://cloud.centos.org/centos/6/images/{0}.xz && xz -d {0}.xz',
      '""".format(base_name))',
    ].join('\n');
    expect(parseSeedBase(sconstruct)).toEqual({
      kind: 'download',
      url: 'http://cloud.centos.org/centos/6/images/CentOS-6-x86_64-GenericCloud-1510.qcow2.xz',
      fileName: 'CentOS-6-x86_64-GenericCloud-1510.qcow2',
      md5: 'fe5c8d4469e6925d6cbb20b830b9d1ac',
      line: 6,
    });
  });

  it("reads a URL formatted with '%s', and a download without a checksum", () => {
    expect(parseSeedBase("base_name = 'd.img'\nURL = 'https://example.org/%s.gz' % base_name\n")).toEqual({
      kind: 'download',
      url: 'https://example.org/d.img.gz',
      fileName: 'd.img',
      md5: undefined,
      line: 2,
    });
  });

  it('reads the early BASE_IMAGE, a disk put into the checkout by hand', () => {
    expect(parseSeedBase("import re\nBASE_IMAGE = 'CentOS-6.qcow2'\n")).toEqual({ kind: 'local', fileName: 'CentOS-6.qcow2', line: 2 });
  });

  it('finds nothing in commented-out lines or an SConstruct of another shape', () => {
    expect(parseSeedBase("# base_name = 'x'\n# url = 'http://example.org/x'\nEnvironment()\n")).toBeUndefined();
  });
});

describe('qcowCompatLines', () => {
  it('finds each line that creates an image with -o compat=..., and not a comment', () => {
    const sconstruct = [
      '&& qemu-img create -f qcow2 -b ${SRC} -o compat=0.10 ${TARGET.file} \\',
      '# -o compat=0.10 for CentOS 6',
      "qemu-img create -f qcow2 -o 'compat=1.1,lazy_refcounts=on' x",
    ].join('\n');
    expect(qcowCompatLines(sconstruct)).toEqual([
      { line: 1, text: '&& qemu-img create -f qcow2 -b ${SRC} -o compat=0.10 ${TARGET.file} \\', compat: '0.10' },
      { line: 3, text: "qemu-img create -f qcow2 -o 'compat=1.1,lazy_refcounts=on' x", compat: '1.1' },
    ]);
  });
});
