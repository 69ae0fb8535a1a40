import { statSync } from 'node:fs';
import { hostname } from 'node:os';
import { execa } from 'execa';
import { TempWorkspace } from '../../testing/temp-workspace';
import { qcow2VirtualSize } from '../disk/qcow2-info';
import { builtHere, isBuildRecord, makeBuildRecord, readBuildRecord } from './build-record';

describe('build records', () => {
  const workspace = new TempWorkspace();
  afterAll(() => workspace.remove());

  it('reads the virtual size from a qcow2 header, as qemu-img reports it', async () => {
    const file = workspace.path('disk.qcow2');
    await execa('qemu-img', ['create', '-q', '-f', 'qcow2', file, '3G']);
    const { stdout } = await execa('qemu-img', ['info', '--output=json', file]);
    expect(await qcow2VirtualSize(file)).toBe(JSON.parse(stdout)['virtual-size']);
    expect(await qcow2VirtualSize(file)).toBe(3 * 1024 ** 3);
  });

  it('refuses a file that is not qcow2, naming it', async () => {
    const file = workspace.write('disk.raw', Buffer.alloc(4096));
    await expect(qcow2VirtualSize(file)).rejects.toThrow(`${file} is not a qcow2 file`);
  });

  it('records the task hash, this host and workspace, the duration and the sizes', async () => {
    const file = workspace.path('layer.qcow2');
    await execa('qemu-img', ['create', '-q', '-f', 'qcow2', file, '64M']);
    const record = await makeBuildRecord(file, { workspaceRoot: '/work/ws', startedAt: Date.now() - 2500, env: { NX_TASK_HASH: '1234' } });
    expect(record).toMatchObject({ taskHash: '1234', host: hostname(), workspace: '/work/ws', fileSize: statSync(file).size, virtualSize: 64 * 1024 ** 2 });
    expect(record.seconds).toBeGreaterThanOrEqual(2.5);
    expect(isBuildRecord(record)).toBe(true);
    expect(builtHere(record, '/work/ws')).toBe(true);
    expect(builtHere(record, '/work/other')).toBe(false);
    expect(builtHere({ ...record, host: 'ci-runner' }, '/work/ws')).toBe(false);
    // Outside Nx (or under --skip-nx-cache) there is no task hash.
    expect((await makeBuildRecord(file, { workspaceRoot: '/w', startedAt: Date.now(), env: {} })).taskHash).toBeNull();
  });

  it('rejects records with missing or mistyped fields', () => {
    expect(isBuildRecord({ taskHash: '1', host: 'h', workspace: '/w', finishedAt: 'x', seconds: '1', fileSize: 1, virtualSize: 1 })).toBe(false);
    expect(isBuildRecord(null)).toBe(false);
  });

  it('reads the record from a manifest file; nothing for a missing file, broken JSON or a manifest without one', () => {
    const record = { taskHash: '42', host: 'h', workspace: '/w', finishedAt: '2026-12-01T08:00:00.000Z', seconds: 1, fileSize: 2, virtualSize: 3 };
    const manifest = (name: string, content: string) => workspace.write(name, content);
    expect(readBuildRecord(manifest('with.manifest.json', JSON.stringify({ kind: 'build-layer', build: record })))).toEqual(record);
    expect(readBuildRecord(manifest('without.manifest.json', JSON.stringify({ kind: 'build-layer' })))).toBeUndefined();
    expect(readBuildRecord(manifest('partial.manifest.json', JSON.stringify({ build: { taskHash: '42' } })))).toBeUndefined();
    expect(readBuildRecord(manifest('broken.manifest.json', '{"build":'))).toBeUndefined();
    expect(readBuildRecord(workspace.path('missing.manifest.json'))).toBeUndefined();
  });
});
