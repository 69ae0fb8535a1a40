import * as path from 'node:path';
import { normalizeOptions } from './executor';

describe('flatten options', () => {
  const base = { imageName: 'prod', chain: 'dist/images/prod/50_cleanup.qcow2', outputDir: 'dist/images/prod/export' };

  it('writes <outputDir>/<format>/<image>.<ext>, qcow2 by default', () => {
    expect(normalizeOptions(base, '/ws')).toMatchObject({
      chain: '/ws/dist/images/prod/50_cleanup.qcow2',
      output: '/ws/dist/images/prod/export/qcow2/prod.qcow2',
      format: 'qcow2',
      compress: false,
      machine: { cpus: 2, memoryMiB: 1024 },
    });
    expect(normalizeOptions({ ...base, format: 'vpc' }, '/ws').output).toBe(path.join('/ws/dist/images/prod/export/vpc/prod.vhd'));
    expect(normalizeOptions({ ...base, format: 'ova' }, '/ws').output).toBe(path.join('/ws/dist/images/prod/export/ova/prod.ova'));
  });

  it('names the option and the fix when options do not fit together', () => {
    expect(() => normalizeOptions({ ...base, format: 'vmdk', compress: true }, '/ws')).toThrow('--compress applies to qcow2 only (got --format vmdk)');
    expect(() => normalizeOptions({ ...base, vmdkSubformat: 'streamOptimized' }, '/ws')).toThrow(
      '--vmdkSubformat applies to --format vmdk only (got --format qcow2).',
    );
    expect(() => normalizeOptions({ ...base, format: 'iso' as never }, '/ws')).toThrow(
      "--format 'iso' is not one vmlb exports; use one of qcow2, raw, vmdk, vhdx, vdi, vpc, ova.",
    );
    expect(() => normalizeOptions({ ...base, format: 'ova', cpus: 0 }, '/ws')).toThrow('--cpus must be a whole number of 1 or more, got 0.');
  });
});
