import { proxyFor, proxySettings } from './proxy-env';

describe('proxyFor: which proxy a request uses (https_proxy, http_proxy, no_proxy)', () => {
  const settings = (env: NodeJS.ProcessEnv) => proxySettings(env);

  it('https URLs use https_proxy, else http_proxy; http URLs use http_proxy only; lower case wins', () => {
    expect(proxyFor('https://deb.debian.org/x', settings({ https_proxy: 'http://p1:3128', http_proxy: 'http://p2:3128' }))).toBe('http://p1:3128');
    expect(proxyFor('https://deb.debian.org/x', settings({ http_proxy: 'http://p2:3128' }))).toBe('http://p2:3128');
    expect(proxyFor('http://deb.debian.org/x', settings({ https_proxy: 'http://p1:3128' }))).toBeUndefined();
    expect(proxyFor('http://deb.debian.org/x', settings({ http_proxy: 'http://lower:1', HTTP_PROXY: 'http://upper:1' }))).toBe('http://lower:1');
    expect(proxyFor('http://deb.debian.org/x', settings({ HTTP_PROXY: 'http://upper:1' }))).toBe('http://upper:1');
    expect(proxyFor('http://deb.debian.org/x', settings({ http_proxy: '' }))).toBeUndefined();
  });

  it('no_proxy: names and their subdomains, leading . or *., ports, commas or spaces, and *', () => {
    const proxied = (url: string, noProxy: string) =>
      proxyFor(url, settings({ https_proxy: 'http://p:1', http_proxy: 'http://p:1', no_proxy: noProxy })) !== undefined;
    expect(proxied('https://cache.internal/x', 'internal')).toBe(false);
    expect(proxied('https://a.b.internal/x', '.internal')).toBe(false);
    expect(proxied('https://a.internal/x', '*.internal')).toBe(false);
    expect(proxied('https://notinternal/x', 'internal')).toBe(true);
    expect(proxied('http://127.0.0.1:9000/x', 'localhost 127.0.0.1')).toBe(false);
    expect(proxied('http://127.0.0.1:9000/x', '127.0.0.1:9001')).toBe(true);
    expect(proxied('http://127.0.0.1:9000/x', '127.0.0.1:9000')).toBe(false);
    expect(proxied('https://s3.example.com/x', 's3.example.com:443')).toBe(false);
    expect(proxied('https://anything/x', '*')).toBe(false);
    expect(proxyFor('https://x/', settings({ https_proxy: 'http://p:1', NO_PROXY: 'x' }))).toBeUndefined();
  });
});
