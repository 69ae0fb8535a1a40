import { TempWorkspace } from '../../testing/temp-workspace';
import { seedFile, serveNoCloudSeed } from './cloud-init-seed';

describe('the cloud-init seed of a test boot', () => {
  let workspace: TempWorkspace;
  beforeEach(() => {
    workspace = new TempWorkspace();
  });
  afterEach(() => workspace.remove());

  /** Serves the seed folder and fetches each file the guest asks for, over real HTTP on 127.0.0.1. */
  async function served(seedDir: string, key: string | Promise<string> = 'ssh-ed25519 AAAA test'): Promise<Record<string, string>> {
    const seed = await serveNoCloudSeed(seedDir, key);
    try {
      const port = new URL(seed.guestUrl).port;
      const fetched: Record<string, string> = {};
      for (const name of ['user-data', 'meta-data', 'vendor-data']) {
        const response = await fetch(`http://127.0.0.1:${port}/${name}`);
        fetched[name] = `${response.status} ${await response.text()}`;
      }
      return fetched;
    } finally {
      await seed.close();
    }
  }

  it('serves user-data and meta-data, with the boot key in user-data', async () => {
    workspace.createFiles({ 'seed/user-data': '#cloud-config\nkey: ${VMLB_SSH_PUBLIC_KEY}\n', 'seed/meta-data': 'instance-id: plain\n' });
    expect(await served(workspace.path('seed'))).toEqual({
      'user-data': '200 #cloud-config\nkey: ssh-ed25519 AAAA test\n',
      'meta-data': '200 instance-id: plain\n',
      'vendor-data': '200 ',
    });
  });

  it('listens before the boot key is made, and serves user-data once it is (an error when it could not be made)', async () => {
    workspace.createFiles({ 'seed/user-data': '#cloud-config\nkey: ${VMLB_SSH_PUBLIC_KEY}\n' });
    const later = new Promise<string>((resolve) => setTimeout(() => resolve('ssh-ed25519 BBBB later'), 200));
    expect(await served(workspace.path('seed'), later)).toMatchObject({ 'user-data': '200 #cloud-config\nkey: ssh-ed25519 BBBB later\n' });
    expect(await served(workspace.path('seed'), Promise.reject(new Error('no ssh-keygen')))).toMatchObject({
      'user-data': '500 ',
      'meta-data': '200 instance-id: vmlb-test-boot\n',
    });
  });

  it("serves user-data.yaml and meta-data.yaml when user-data and meta-data are absent (vm-layer-builder's names)", async () => {
    workspace.createFiles({
      'seed/user-data.yaml': '#cloud-config\nkey: ${VMLB_SSH_PUBLIC_KEY}\n',
      'seed/meta-data.yaml': 'instance-id: from-yaml\n',
      'seed/vendor-data.yaml': '#cloud-config\n',
    });
    expect(seedFile(workspace.path('seed'), 'user-data')).toBe(workspace.path('seed/user-data.yaml'));
    expect(await served(workspace.path('seed'))).toEqual({
      'user-data': '200 #cloud-config\nkey: ssh-ed25519 AAAA test\n',
      'meta-data': '200 instance-id: from-yaml\n',
      'vendor-data': '200 #cloud-config\n',
    });
  });

  it('mixes the two namings file by file, and makes up meta-data when there is none', async () => {
    workspace.createFiles({ 'seed/user-data.yaml': '#cloud-config\n' });
    expect(await served(workspace.path('seed'))).toMatchObject({ 'user-data': '200 #cloud-config\n', 'meta-data': '200 instance-id: vmlb-test-boot\n' });
    workspace.createFiles({ 'seed/meta-data': 'instance-id: plain\n' });
    expect(await served(workspace.path('seed'))).toMatchObject({ 'meta-data': '200 instance-id: plain\n' });
  });

  it.each(['user-data', 'meta-data'] as const)('refuses a seed with both %s and %s.yaml, naming both files', async (name) => {
    workspace.createFiles({ 'seed/user-data': '#cloud-config\n', [`seed/${name}.yaml`]: '#cloud-config\n', [`seed/${name}`]: '#cloud-config\n' });
    const message = `The cloud-init seed holds both ${workspace.path('seed', name)} and ${workspace.path('seed', `${name}.yaml`)}; test-boot serves one file as ${name}. Merge them into one and remove the other.`;
    expect(() => seedFile(workspace.path('seed'), name)).toThrow(message);
    await expect(serveNoCloudSeed(workspace.path('seed'), 'key')).rejects.toThrow(message);
  });

  it('says which names it looked for when there is no user-data', async () => {
    workspace.createFiles({ 'seed/meta-data.yaml': 'instance-id: x\n' });
    await expect(serveNoCloudSeed(workspace.path('seed'), 'key')).rejects.toThrow(`${workspace.path('seed')}/user-data (or user-data.yaml) does not exist.`);
  });
});
