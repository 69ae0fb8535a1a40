import { formatTable } from './text-table';

describe('formatTable', () => {
  it('pads every column but the last to its widest cell', () => {
    expect(
      formatTable(
        ['Layer', 'State', 'Changes'],
        [
          ['base', 'built here', 'base disk'],
          ['10_hello', 'not built', ''],
        ],
      ),
    ).toBe(['Layer     State       Changes', '--------  ----------  ---------', 'base      built here  base disk', '10_hello  not built'].join('\n'));
  });

  it('prints the header and rule alone when there are no rows', () => {
    expect(formatTable(['A', 'Bb'], [])).toBe('A  Bb\n-  --');
  });
});
