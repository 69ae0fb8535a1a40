import { TempWorkspace } from '../../testing/temp-workspace';
import { checkSecrets, MissingSecretError, secretsFromEnvironment } from './build-secrets';

describe('secret values come from the environment or a file outside the workspace', () => {
  let temp: TempWorkspace;
  const hints = [{ name: 'apt_token', target: '/run/secrets/apt', share: false }];
  const layer = { imageName: 'prod', layer: '20_packages', script: 'images/prod/20_packages/build-layer' };
  beforeEach(() => {
    temp = new TempWorkspace();
    temp.mkdir('workspace/images');
    temp.write('outside/token', 's3cr3t\n');
    temp.write('workspace/token', 'committed by mistake');
    temp.write('outside/empty', '');
  });
  afterEach(() => temp.remove());
  const read = (env: NodeJS.ProcessEnv) => secretsFromEnvironment(hints, env, temp.path('workspace'));

  it('takes VMLB_SECRET_<NAME> as it is, before a file', () => {
    const [secret] = read({ VMLB_SECRET_APT_TOKEN: 'from the variable', VMLB_SECRET_APT_TOKEN_FILE: temp.path('outside/token') });
    expect(secret.value?.toString()).toBe('from the variable');
    expect(secret.source).toBe('VMLB_SECRET_APT_TOKEN');
    expect(() => checkSecrets([secret], layer)).not.toThrow();
  });

  it('reads the file VMLB_SECRET_<NAME>_FILE names, byte for byte (a final newline too)', () => {
    const [secret] = read({ VMLB_SECRET_APT_TOKEN_FILE: temp.path('outside/token') });
    expect(secret.value?.toString()).toBe('s3cr3t\n');
    expect(secret.source).toBe('VMLB_SECRET_APT_TOKEN_FILE');
  });

  it.each([
    ['nothing set', {}, 'neither VMLB_SECRET_APT_TOKEN nor VMLB_SECRET_APT_TOKEN_FILE is set'],
    [
      'an empty variable',
      { VMLB_SECRET_APT_TOKEN: '' },
      'neither VMLB_SECRET_APT_TOKEN nor VMLB_SECRET_APT_TOKEN_FILE is set (VMLB_SECRET_APT_TOKEN is empty)',
    ],
    [
      'a file that is not there',
      { VMLB_SECRET_APT_TOKEN_FILE: '/nonexistent/token' },
      'VMLB_SECRET_APT_TOKEN_FILE names /nonexistent/token, which cannot be read (ENOENT)',
    ],
    ['a file in the workspace', { VMLB_SECRET_APT_TOKEN_FILE: 'token' }, 'VMLB_SECRET_APT_TOKEN_FILE names token, which is inside the workspace'],
    ['an empty file', { VMLB_SECRET_APT_TOKEN_FILE: '<outside>/empty' }, 'VMLB_SECRET_APT_TOKEN_FILE names <outside>/empty, which is empty'],
  ])('refuses %s, naming the layer, the hint and the variables to set', (_case, rawEnv, problem) => {
    const outside = temp.path('outside');
    const env = Object.fromEntries(Object.entries(rawEnv).map(([name, value]) => [name, value.replace('<outside>', outside)]));
    const secrets = read(env);
    expect(secrets[0].value).toBeUndefined();
    expect(() => checkSecrets(secrets, layer)).toThrow(MissingSecretError);
    expect(() => checkSecrets(secrets, layer)).toThrow(
      `Layer 20_packages of image prod: images/prod/20_packages/build-layer: # secret apt_token /run/secrets/apt has no value: ${problem.replace('<outside>', outside)}. ` +
        'Set VMLB_SECRET_APT_TOKEN to the secret, or VMLB_SECRET_APT_TOKEN_FILE to a file outside the workspace that holds it. Nothing was built.',
    );
  });

  it('never puts a value in its message', () => {
    const secrets = secretsFromEnvironment(
      [...hints, { name: 'other', target: '/run/other', share: false }],
      { VMLB_SECRET_APT_TOKEN: 'do-not-print-me' },
      temp.path('workspace'),
    );
    expect(() => checkSecrets(secrets, layer)).toThrow(/# secret other \/run\/other has no value/);
    expect(() => checkSecrets(secrets, layer)).not.toThrow(/do-not-print-me|apt_token/);
  });
});
