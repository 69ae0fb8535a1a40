import { TempWorkspace } from '../../testing/temp-workspace';
import { ImageConfigError, describeJsonError, parseImageConfig, readImageConfig } from './image-config';

const parse = (value: unknown) => parseImageConfig(JSON.stringify(value), 'images/x/image.json');
const SHA = 'a'.repeat(64);

describe('parseImageConfig', () => {
  it('normalises each kind of base', () => {
    expect(parse({ base: { url: 'https://example.org/disk.qcow2', sha256: SHA.toUpperCase() } })).toEqual({
      base: { kind: 'url', url: 'https://example.org/disk.qcow2', sha256: SHA },
      testBoot: {},
    });
    expect(parse({ base: { path: '../disks/debian.qcow2' } }).base).toEqual({ kind: 'path', path: '../disks/debian.qcow2' });
    expect(parse({ base: { empty: '4G' } }).base).toEqual({ kind: 'empty', size: '4G', bytes: 4 * 1024 ** 3 });
    expect(parse({ base: { image: 'prod', layer: '20_packages' } }).base).toEqual({ kind: 'image', image: 'prod', layer: '20_packages' });
  });

  it('keeps rootPartition and test-boot settings', () => {
    const config = parse({ base: { empty: '1G' }, rootPartition: 2, testBoot: { memory: '2G', cpus: 2, sshPort: 2222 } });
    expect(config.rootPartition).toBe(2);
    expect(config.testBoot).toEqual({ memory: '2G', cpus: 2, sshPort: 2222 });
  });

  it.each<[string, unknown, string]>([
    ['not JSON', undefined, 'images/x/image.json is not valid JSON'],
    ['no base', {}, '  - base is required'],
    ['unknown top-level field', { base: { empty: '1G' }, bsae: 1 }, '  - bsae is not a known field'],
    ['url without sha256', { base: { url: 'https://x/y.img' } }, '  - base.sha256 is required with base.url'],
    ['short sha256', { base: { url: 'https://x/y.img', sha256: 'abc' } }, '  - base.sha256 must be 64 hexadecimal digits'],
    ['ftp url', { base: { url: 'ftp://x/y.img', sha256: SHA } }, '  - base.url must start with http://, https:// or file://'],
    ['two kinds', { base: { empty: '1G', path: 'a.qcow2' } }, '  - base must have exactly one of url (with sha256), path, empty or image (with layer)'],
    ['image without layer', { base: { image: 'prod' } }, '  - base.layer is required with base.image'],
    ['a layer that is not a layer folder name', { base: { image: 'prod', layer: 'packages' } }, '  - base.layer must be a layer folder name of that image'],
    ['an image name with a slash', { base: { image: '../prod', layer: '20_packages' } }, '  - base.image must name another image'],
    ['unknown kind', { base: { docker: 'debian' } }, '(found: docker)'],
    ['bad size', { base: { empty: 'large' } }, '  - base.empty must be a size such as "4G"'],
    ['extra field in base', { base: { empty: '1G', format: 'raw' } }, '  - base.format is not a known field'],
    ['rootPartition 0', { base: { empty: '1G' }, rootPartition: 0 }, '  - rootPartition must be >= 1'],
    ['testBoot typo', { base: { empty: '1G' }, testBoot: { memroy: '1G' } }, '  - testBoot.memroy is not a known field'],
  ])('rejects %s, naming the file and the field', (_label, value, message) => {
    const text = value === undefined ? '{ base: ' : JSON.stringify(value);
    expect(() => parseImageConfig(text, 'images/x/image.json')).toThrow(ImageConfigError);
    expect(() => parseImageConfig(text, 'images/x/image.json')).toThrow(message);
    expect(() => parseImageConfig(text, 'images/x/image.json')).toThrow(/^images\/x\/image\.json /);
  });
});

describe('describeJsonError: where image.json stops being JSON, and the fix', () => {
  const complaint = (text: string) => {
    try {
      parseImageConfig(text, 'images/x/image.json');
    } catch (error) {
      return (error as Error).message;
    }
    throw new Error('expected a parse error');
  };

  it('shows the line and column of a stray character', () => {
    expect(complaint('{\n  "base": {"empty": "1G"} x\n}\n')).toBe(
      [
        `images/x/image.json is not valid JSON: Expected ',' or '}' after property value at line 2, column 27:`,
        '      "base": {"empty": "1G"} x',
        `    ${' '.repeat(26)}^`,
        'Fix the JSON there: a comma before a closing brace, or a missing comma, quote or brace, is the usual cause.',
      ].join('\n'),
    );
  });

  it('says when the file ends too early, as after a trailing comma', () => {
    expect(complaint('{"base": {"empty": "64M"},\n')).toBe(
      'images/x/image.json is not valid JSON: Expected double-quoted property name at the end of the file (line 2, column 1). ' +
        'Fix the JSON there: a comma before a closing brace, or a missing comma, quote or brace, is the usual cause.',
    );
    expect(complaint('')).toMatch(/^images\/x\/image\.json is not valid JSON: the file ends before the JSON does \(line 1, column 1\)\. Fix the JSON there/);
  });

  it("keeps the parser's own words when it gives no position", () => {
    expect(describeJsonError('{"a": nope}', 'Unexpected token \'o\', "{"a": nope}" is not valid JSON')).toBe(
      'Unexpected token \'o\', "{"a": nope}" is not valid JSON. Fix the JSON: a comma before a closing brace, or a missing comma, quote or brace, is the usual cause.',
    );
  });
});

describe('readImageConfig', () => {
  const workspace = new TempWorkspace();
  afterAll(() => workspace.remove());

  it('reads a file and says which file is missing', () => {
    const file = workspace.write('image.json', '{"base": {"empty": "2G"}}');
    expect(readImageConfig(file, 'images/y/image.json').base).toMatchObject({ kind: 'empty' });
    expect(() => readImageConfig(workspace.path('nope.json'), 'images/z/image.json')).toThrow(/^images\/z\/image\.json: cannot be read/);
  });
});
