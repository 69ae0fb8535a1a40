import { CommandError, commandLine, run, tail } from './exec';

describe('run', () => {
  it('returns the output of a command', async () => {
    await expect(run('sh', ['-c', 'echo out; echo err >&2'])).resolves.toEqual({ stdout: 'out', stderr: 'err', exitCode: 0 });
  });

  it('passes arguments without a shell', async () => {
    const { stdout } = await run('printf', ['%s|', 'a b', '$HOME', '; rm -rf /']);
    expect(stdout).toBe('a b|$HOME|; rm -rf /|');
  });

  it('names the command, its exit code and its output when it fails', async () => {
    const failure = run('sh', ['-c', 'echo one; echo two >&2; exit 3']);
    await expect(failure).rejects.toBeInstanceOf(CommandError);
    await expect(failure).rejects.toThrow("sh -c 'echo one; echo two >&2; exit 3' exited with code 3:\ntwo\none");
  });

  it('returns a non-zero exit instead of throwing when asked to', async () => {
    await expect(run('sh', ['-c', 'exit 4'], { reject: false })).resolves.toMatchObject({ exitCode: 4 });
  });

  it('says when a command does not exist', async () => {
    await expect(run('vmlb-no-such-command', [])).rejects.toThrow(/vmlb-no-such-command could not start/);
  });

  it('kills a command that runs past its timeout', async () => {
    await expect(run('sleep', ['5'], { timeout: 200 })).rejects.toThrow(/timed out after 200 ms/);
  });
});

describe('tail and commandLine', () => {
  it('keeps the last lines', () => {
    expect(tail('a\nb\nc\n', 2)).toBe('b\nc');
  });
  it('quotes only what a shell would need quoted', () => {
    expect(commandLine('qemu-img', ['create', '-f', 'qcow2', "it's here", 'a b'])).toBe(`qemu-img create -f qcow2 'it'\\''s here' 'a b'`);
  });
});
