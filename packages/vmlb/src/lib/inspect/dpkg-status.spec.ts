import * as fs from 'node:fs';
import { scratchImageRoot } from '../../testing/image-root';
import { diffSnapshots } from './layer-manifest';
import { type RootSnapshot, snapshotRoot } from './root-snapshot';

const image = scratchImageRoot('vmlb-dpkg-status-');
const { at, write, manifestOf } = image;

describe('diffSnapshots: dpkg packages', () => {
  const stanza = (fields: Record<string, string>) =>
    Object.entries(fields)
      .map(([name, value]) => `${name}: ${value}`)
      .join('\n');

  const installed = (name: string, version: string, architecture = 'amd64') =>
    stanza({ Package: name, Status: 'install ok installed', Priority: 'optional', Architecture: architecture, Version: version });

  const statusFile = (...stanzas: string[]) => `${stanzas.join('\n\n')}\n`;

  const BEFORE = statusFile(
    installed('bash', '5.2.15-2+b2'),
    installed('curl', '8.5.0-1'),
    // Multi-line fields: continuation lines must not be read as fields.
    `${installed('libc6', '2.36-9+deb12u4')}\nDescription: GNU C Library\n Package: not-a-package\n Version: 0\nConffiles:\n /etc/ld.so.conf 1234`,
    installed('oldtool', '1.0-1'),
    stanza({ Package: 'purged-long-ago', Status: 'deinstall ok config-files', Architecture: 'amd64', Version: '0.1' }),
  );

  const AFTER = statusFile(
    installed('bash', '5.2.21-2'), // upgraded
    installed('curl', '7.88.1-10'), // downgraded
    installed('libc6', '2.36-9+deb12u4'),
    installed('libc6', '2.36-9+deb12u4', 'i386'), // second architecture of the same package
    stanza({ Package: 'oldtool', Status: 'deinstall ok config-files', Architecture: 'amd64', Version: '1.0-1' }), // removed, config left
    installed('jq', '1.6-2.1', 'amd64'),
    stanza({ Package: 'pinned', Status: 'hold ok installed', Architecture: 'all', Version: '3' }),
    stanza({ Package: 'purged-long-ago', Status: 'deinstall ok config-files', Architecture: 'amd64', Version: '0.1' }),
  );

  async function snapshotWithStatus(status: string): Promise<RootSnapshot> {
    write('/var/lib/dpkg/status', status);
    return snapshotRoot(image.root);
  }

  it('reads installed packages, qualifying a name with its architecture only when several are installed', async () => {
    const before = await snapshotWithStatus(BEFORE);
    expect(before.packageManager).toBe('dpkg');
    expect(before.packages).toEqual(
      new Map([
        ['bash', '5.2.15-2+b2'],
        ['curl', '8.5.0-1'],
        ['libc6', '2.36-9+deb12u4'],
        ['oldtool', '1.0-1'],
      ]),
    );
    const after = await snapshotWithStatus(AFTER);
    expect([...after.packages!.keys()].sort()).toEqual(['bash', 'curl', 'jq', 'libc6:amd64', 'libc6:i386', 'pinned']);
  });

  it('lists installed, removed and upgraded (or downgraded) packages, matching libc6 with libc6:amd64', async () => {
    const before = await snapshotWithStatus(BEFORE);
    const after = await snapshotWithStatus(AFTER);
    expect(diffSnapshots(before, after).packages).toEqual({
      manager: 'dpkg',
      installed: [
        { name: 'jq', version: '1.6-2.1' },
        { name: 'libc6:i386', version: '2.36-9+deb12u4' },
        { name: 'pinned', version: '3' },
      ],
      removed: [{ name: 'oldtool', version: '1.0-1' }],
      upgraded: [
        { name: 'bash', from: '5.2.15-2+b2', to: '5.2.21-2' },
        { name: 'curl', from: '8.5.0-1', to: '7.88.1-10' },
      ],
    });
    expect(diffSnapshots(after, before).packages?.removed.map((pkg) => pkg.name)).toEqual(['jq', 'libc6:i386', 'pinned']);
  });

  it('counts every package as installed when the layer created the dpkg database', async () => {
    const before = await snapshotRoot(image.root);
    const after = await snapshotWithStatus(statusFile(installed('base-files', '12.4')));
    expect(diffSnapshots(before, after).packages).toEqual({ manager: 'dpkg', installed: [{ name: 'base-files', version: '12.4' }], removed: [], upgraded: [] });
  });

  it('has no packages section when neither snapshot has a dpkg database', async () => {
    write('/etc/hostname');
    const manifest = await manifestOf(() => write('/etc/motd'));
    expect(manifest.packages).toBeUndefined();
    expect('packages' in manifest).toBe(false);
  });

  it("reads the database through the image's own symlinks, never the host's", async () => {
    write('/real-var/lib/dpkg/status', statusFile(installed('inside', '1')));
    fs.symlinkSync('/real-var', at('/var'));
    const snapshot = await snapshotRoot(image.root);
    expect(snapshot.packages).toEqual(new Map([['inside', '1']]));
  });

  it('names the status file and line of a stanza without a Package field', async () => {
    write('/var/lib/dpkg/status', statusFile(installed('bash', '5'), 'Status: install ok installed\nVersion: 1'));
    await expect(snapshotRoot(image.root)).rejects.toThrow(`${at('/var/lib/dpkg/status')}:7: stanza has no Package field.`);
  });
});
