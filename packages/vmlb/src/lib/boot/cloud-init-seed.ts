import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { run } from '../util/exec';

export const SSH_KEY_PLACEHOLDER = '${VMLB_SSH_PUBLIC_KEY}';

/** A key pair made for one boot, so a test VM never accepts a key that outlives it. */
export async function generateSshKey(dir: string): Promise<{ privateKey: string; publicKey: string }> {
  const privateKey = path.join(dir, 'id_ed25519');
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'vmlb-test-boot', '-f', privateKey]);
  return { privateKey, publicKey: readFileSync(`${privateKey}.pub`, 'utf8').trim() };
}

/** The files a NoCloud seed serves; each may also be named with `.yaml` (as vm-layer-builder named them). */
export type SeedFileName = 'user-data' | 'meta-data' | 'vendor-data';

/**
 * The file of a seed folder served as `name`: `name` itself, else
 * `name.yaml`; undefined when neither exists. Both present is an error:
 * serving one would silently ignore the other.
 */
export function seedFile(seedDir: string, name: SeedFileName): string | undefined {
  const plain = path.join(seedDir, name);
  const yaml = `${plain}.yaml`;
  const [hasPlain, hasYaml] = [existsSync(plain), existsSync(yaml)];
  if (hasPlain && hasYaml) {
    throw new Error(`The cloud-init seed holds both ${plain} and ${yaml}; test-boot serves one file as ${name}. Merge them into one and remove the other.`);
  }
  return hasPlain ? plain : hasYaml ? yaml : undefined;
}

/**
 * Serves a cloud-init NoCloud seed (user-data, meta-data, vendor-data) over
 * HTTP on 127.0.0.1; a qemu guest on user networking reaches it at
 * 10.0.2.2. No ISO or FAT tool is needed. `${VMLB_SSH_PUBLIC_KEY}` in
 * user-data is replaced with the boot's public key. Each file is read as
 * `seedFile` finds it (`user-data`, else `user-data.yaml`). The key may
 * still be in the making (a promise): the guest asks for user-data long
 * after qemu started, so the boot need not wait for ssh-keygen.
 */
export async function serveNoCloudSeed(seedDir: string, publicKey: string | Promise<string>): Promise<{ guestUrl: string; close: () => Promise<void> }> {
  const read = (name: SeedFileName) => {
    const file = seedFile(seedDir, name);
    return file === undefined ? undefined : readFileSync(file, 'utf8');
  };
  const userData = read('user-data');
  if (userData === undefined) throw new Error(`${seedDir}/user-data (or user-data.yaml) does not exist.`);
  const files: Record<string, string | Promise<string>> = {
    '/user-data': Promise.resolve(publicKey).then((key) => userData.split(SSH_KEY_PLACEHOLDER).join(key)),
    '/meta-data': read('meta-data') ?? 'instance-id: vmlb-test-boot\n',
    '/vendor-data': read('vendor-data') ?? '',
  };
  // A key that failed is reported by whoever awaits it; the guest gets a 500.
  Promise.resolve(files['/user-data']).catch(() => undefined);
  const server: Server = createServer((request, response) => {
    const body = files[(request.url ?? '').split('?')[0]];
    if (body === undefined) {
      response.writeHead(404).end();
      return;
    }
    Promise.resolve(body).then(
      (text) => response.writeHead(200, { 'content-type': 'text/plain' }).end(text),
      () => response.writeHead(500).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    guestUrl: `http://10.0.2.2:${port}/`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/**
 * Runs a command in the guest over ssh, retrying while sshd is not up yet
 * (ssh exits 255 when it cannot connect or authenticate) until `deadline`,
 * every half second: a refused connection costs nothing, and each second
 * waited is a second added to the check.
 */
export async function sshRun(
  command: string,
  options: { user: string; port: number; privateKey: string; deadline: number },
): Promise<{ exitCode: number; output: string }> {
  const args = [
    '-i',
    options.privateKey,
    '-p',
    String(options.port),
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    'UserKnownHostsFile=/dev/null',
    '-o',
    'BatchMode=yes',
    '-o',
    'ConnectTimeout=5',
    '-o',
    'LogLevel=ERROR',
    `${options.user}@127.0.0.1`,
    command,
  ];
  for (;;) {
    const result = await run('ssh', args, { reject: false, stream: true });
    const output = [result.stdout, result.stderr].filter(Boolean).join('\n');
    if (result.exitCode !== 255 || Date.now() > options.deadline) return { exitCode: result.exitCode, output };
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}
