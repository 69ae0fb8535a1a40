import { execa } from 'execa';
import { shellQuote, shellWord } from './shell-quote';

describe('shell quoting', () => {
  it.each(['plain', 'two words', "it's", '$HOME `id` \\n', ''])('survives a real shell unchanged: %p', async (word) => {
    const { stdout } = await execa('sh', ['-c', `printf '%s' ${shellQuote(word)}`]);
    expect(stdout).toBe(word);
  });

  it('leaves plain words bare', () => {
    expect(shellWord('/dev/loop0')).toBe('/dev/loop0');
    expect(shellWord('a b')).toBe(`'a b'`);
  });
});
