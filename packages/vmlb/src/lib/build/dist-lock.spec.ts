import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { FolderLock } from './dist-lock';

// Real flock(2) through util-linux's flock; locks on two open file
// descriptions conflict even within one process, as across two.
describe('FolderLock', () => {
  let folder: string;
  beforeEach(() => {
    folder = mkdtempSync(path.join(tmpdir(), 'vmlb-lock-'));
  });
  afterEach(() => rmSync(folder, { recursive: true, force: true }));

  it('makes a second taker wait, once told, until the first releases', async () => {
    const first = await FolderLock.acquire(folder);
    const onWait = jest.fn();
    let second: FolderLock | undefined;
    const taking = FolderLock.acquire(folder, { onWait }).then((lock) => (second = lock));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(onWait).toHaveBeenCalledTimes(1);
    expect(second).toBeUndefined();
    first.release();
    await taking;
    expect(second).toBeDefined();
    second!.release();
  });

  it('lets readers share it, and makes a writer wait for them (a derived image’s build on the other image’s layer)', async () => {
    const reader = await FolderLock.acquire(folder, { shared: true });
    const otherReader = jest.fn();
    const secondReader = await FolderLock.acquire(folder, { shared: true, onWait: otherReader });
    expect(otherReader).not.toHaveBeenCalled();
    // Told to wait (onWait) before it waits: no clock involved.
    let writerWaits!: () => void;
    const writerWaiting = new Promise<void>((resolve) => (writerWaits = resolve));
    let writer: FolderLock | undefined;
    const taking = FolderLock.acquire(folder, { onWait: () => writerWaits() }).then((lock) => (writer = lock));
    await writerWaiting;
    expect(writer).toBeUndefined();
    reader.release();
    secondReader.release();
    await taking;
    let readerWaits!: () => void;
    const readerWaiting = new Promise<void>((resolve) => (readerWaits = resolve));
    const readingAfter = FolderLock.acquire(folder, { shared: true, onWait: () => readerWaits() });
    await readerWaiting;
    writer!.release();
    (await readingAfter).release();
  });

  it('does not make a taker wait when nobody holds it, and creates the folder', async () => {
    const onWait = jest.fn();
    const lock = await FolderLock.acquire(path.join(folder, 'new'), { onWait });
    expect(onWait).not.toHaveBeenCalled();
    lock.release();
  });

  it('stops waiting when aborted, with the abort reason', async () => {
    const first = await FolderLock.acquire(folder);
    const controller = new AbortController();
    const taking = FolderLock.acquire(folder, { signal: controller.signal });
    setTimeout(() => controller.abort(new Error('interrupted by SIGINT')), 200);
    await expect(taking).rejects.toThrow('interrupted by SIGINT');
    first.release();
  });

  it('is free again once a holder is killed with SIGKILL', async () => {
    const compiled = path.resolve(__dirname, '../../../dist/lib/build/dist-lock.js');
    const holder = spawn(
      process.execPath,
      [
        '-e',
        `require(${JSON.stringify(compiled)}).FolderLock.acquire(${JSON.stringify(folder)}).then(() => { console.log('held'); setInterval(() => {}, 1000); })`,
      ],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    await new Promise<void>((resolve) => holder.stdout!.on('data', () => resolve()));
    const onWait = jest.fn();
    const taking = FolderLock.acquire(folder, { onWait });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(onWait).toHaveBeenCalledTimes(1);
    holder.kill('SIGKILL');
    const lock = await taking;
    lock.release();
  });
});
