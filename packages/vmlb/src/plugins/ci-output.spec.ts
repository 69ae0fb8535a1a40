import { streamOutputInCI } from './ci-output';

describe('streamOutputInCI', () => {
  it('streams with project prefixes in CI', () => {
    const env: NodeJS.ProcessEnv = {};
    expect(streamOutputInCI({}, ['build', 'image-prod'], env, true)).toBe(true);
    expect(env).toEqual({ NX_STREAM_OUTPUT: 'true', NX_PREFIX_OUTPUT: 'true' });
  });

  it.each([
    ['outside CI', {}, [], {}, false],
    ['when the run chose an output style', {}, ['build', '--outputStyle=static'], {}, true],
    ['when the run chose one with the dashed flag', {}, ['build', '--output-style', 'dynamic'], {}, true],
    ['when NX_STREAM_OUTPUT is set', {}, [], { NX_STREAM_OUTPUT: 'false' }, true],
    ['when nx.json turns it off', { streamOutputInCI: false }, [], {}, true],
  ])('leaves the output alone %s', (_case, options, argv, env: NodeJS.ProcessEnv, ci) => {
    const before = { ...env };
    expect(streamOutputInCI(options, argv, env, ci)).toBe(false);
    expect(env).toEqual(before);
  });
});
