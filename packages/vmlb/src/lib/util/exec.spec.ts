import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
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

  it('kills a command that ignores the stop signal once the grace period is over', async () => {
    const started = Date.now();
    await expect(run('sh', ['-c', 'trap "" TERM; while :; do sleep 0.1; done'], { timeout: 100 })).rejects.toThrow(/timed out after 100 ms/);
    expect(Date.now() - started).toBeLessThan(20_000);
  }, 30_000);

  it('feeds input to the command and gives it end of file otherwise', async () => {
    await expect(run('cat', [], { input: 'line one\nline two\n' })).resolves.toMatchObject({ stdout: 'line one\nline two' });
    await expect(run('cat', [])).resolves.toMatchObject({ stdout: '', exitCode: 0 });
  });

  it('stops a command when its abort signal fires, with the kill signal asked for', async () => {
    const controller = new AbortController();
    const running = run('sh', ['-c', 'trap "" TERM; while :; do sleep 0.1; done'], { signal: controller.signal, killSignal: 'SIGKILL' });
    setTimeout(() => controller.abort(), 200);
    await expect(running).rejects.toThrow(/was stopped/);
  });

  it('says which signal killed a command', async () => {
    await expect(run('sh', ['-c', 'kill -9 $$'])).rejects.toThrow(/was killed by SIGKILL/);
  });

  it('merges env over ours, unsets undefined names, and with cleanEnv passes only env', async () => {
    process.env.VMLB_EXEC_SPEC = 'ours';
    try {
      await expect(run('sh', ['-c', 'echo "$VMLB_EXEC_SPEC/$EXTRA"'], { env: { EXTRA: 'x' } })).resolves.toMatchObject({ stdout: 'ours/x' });
      await expect(run('sh', ['-c', 'echo "${VMLB_EXEC_SPEC-unset}"'], { env: { VMLB_EXEC_SPEC: undefined } })).resolves.toMatchObject({ stdout: 'unset' });
      const { stdout } = await run('/usr/bin/env', [], { env: { ONLY: '1' }, cleanEnv: true });
      expect(stdout).toBe('ONLY=1');
    } finally {
      delete process.env.VMLB_EXEC_SPEC;
    }
  });

  it('copies the output to ours when streaming, and still returns it', async () => {
    const written: string[] = [];
    const spy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
    try {
      await expect(run('echo', ['streamed'], { stream: true })).resolves.toMatchObject({ stdout: 'streamed' });
    } finally {
      spy.mockRestore();
    }
    expect(written.join('')).toBe('streamed\n');
  });

  it('hands extra descriptors on as 3, 4, ...', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'vmlb-exec-'));
    const fd = openSync(path.join(dir, 'out'), 'w');
    try {
      await run('sh', ['-c', 'echo to-fd-3 >&3'], { passFds: [fd] });
    } finally {
      closeSync(fd);
    }
    expect(readFileSync(path.join(dir, 'out'), 'utf8')).toBe('to-fd-3\n');
    rmSync(dir, { recursive: true });
  });

  it('decodes UTF-8 split across reads', async () => {
    const { stdout } = await run('sh', ['-c', 'i=0; while [ $i -lt 40000 ]; do printf é; i=$((i+1)); done']);
    expect(stdout).toBe('é'.repeat(40000));
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
