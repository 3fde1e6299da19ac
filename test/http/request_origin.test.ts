import { clientAddressOf, servedOriginsOf, servedTargetOf, type ConnectionFacts } from '../../src/http/request_origin.js';

/** The pure decision behind servedOriginOnly: which origin a request is for, from configuration and connection. */

const served = servedOriginsOf({
  issuer: 'https://auth.example.com',
  listeners: { https: { host: '10.0.0.5', port: 8443 }, http: { host: '0.0.0.0', port: 8080, allowClientSecrets: false } },
});
const tls: ConnectionFacts = { encrypted: true, localPort: 8443, fromTrustedProxy: false };
const plain: ConnectionFacts = { encrypted: false, localPort: 8080, fromTrustedProxy: false };
const fromProxy: ConnectionFacts = { encrypted: false, localPort: 8080, fromTrustedProxy: true };
const request = (host: string | string[] | undefined, headers: Record<string, string[]> = {}, url = '/token') => ({
  url, headersDistinct: { ...(host === undefined ? {} : { host: Array.isArray(host) ? host : [host] }), ...headers },
});

describe('servedTargetOf', () => {
  test.each([
    ['the issuer', 'auth.example.com', tls, 'https://auth.example.com'],
    ['the issuer with its default port spelled out', 'auth.example.com:443', tls, 'https://auth.example.com'],
    ['the issuer in upper case', 'AUTH.Example.COM', tls, 'https://auth.example.com'],
    ['the HTTPS listener under the issuer\'s name and its real port', 'auth.example.com:8443', tls, 'https://auth.example.com:8443'],
    ['the HTTPS listener by its configured address', '10.0.0.5:8443', tls, 'https://10.0.0.5:8443'],
    ['the HTTP listener under the issuer\'s name', 'auth.example.com:8080', plain, 'http://auth.example.com:8080'],
  ])('%s is served', (_label, host, connection, origin) => {
    expect(servedTargetOf(request(host), connection, served)).toMatchObject({ ok: true, origin, secure: connection.encrypted });
  });

  test.each([
    ['another host', 'evil.example', tls],
    ['the issuer\'s name on another port', 'auth.example.com:9999', tls],
    ['the issuer over plain HTTP (http://auth.example.com)', 'auth.example.com', plain],
    ['a wildcard bind address', '0.0.0.0:8080', plain],
    ['the HTTPS listener\'s address on the HTTP listener', '10.0.0.5:8080', plain],
  ])('%s → 421', (_label, host, connection) => {
    expect(servedTargetOf(request(host), connection, served)).toMatchObject({ ok: false, status: 421 });
  });

  test('X-Forwarded-Proto: https from a trusted proxy makes the plain connection the issuer\'s, and secure', () => {
    expect(servedTargetOf(request('auth.example.com', { 'x-forwarded-proto': ['https'] }), fromProxy, served)).toEqual({
      ok: true, origin: 'https://auth.example.com', secure: true, originForm: undefined,
    });
  });

  test('X-Forwarded-Proto from anyone else is not read', () => {
    expect(servedTargetOf(request('auth.example.com', { 'x-forwarded-proto': ['https'] }), plain, served)).toMatchObject({ ok: false, status: 421 });
  });

  test('X-Forwarded-Host is never read, even from a trusted proxy', () => {
    expect(servedTargetOf(request('auth.example.com', { 'x-forwarded-proto': ['https'], 'x-forwarded-host': ['evil.example'] }), fromProxy, served))
      .toMatchObject({ ok: true, origin: 'https://auth.example.com' });
  });

  test('an absolute-form target names the origin (the Host header is ignored) and is rewritten to origin form', () => {
    expect(servedTargetOf(request('evil.example', {}, 'https://auth.example.com/token?x=1'), tls, served)).toEqual({
      ok: true, origin: 'https://auth.example.com', secure: true, originForm: '/token?x=1',
    });
    expect(servedTargetOf(request('auth.example.com', {}, 'https://evil.example/token'), tls, served)).toMatchObject({ ok: false, status: 421 });
    expect(servedTargetOf(request('auth.example.com', {}, 'http://auth.example.com/token'), tls, served)).toMatchObject({ ok: false, status: 421 });
    expect(servedTargetOf(request('auth.example.com', {}, 'https://user:pw@auth.example.com/token'), tls, served)).toMatchObject({ ok: false, status: 421 });
  });

  test.each([
    ['no Host', undefined],
    ['two Host headers', ['auth.example.com', 'evil.example']],
    ['a port out of range', 'auth.example.com:99999'],
    ['an empty port', 'auth.example.com:'],
    ['userinfo', 'user@auth.example.com'],
    ['a path', 'auth.example.com/x'],
  ])('%s → 400', (_label, host) => {
    expect(servedTargetOf(request(host), tls, served)).toMatchObject({ ok: false, status: 400 });
  });

  test('a connection whose local port is unknown serves the issuer only, never a listener origin', () => {
    const unknownPort: ConnectionFacts = { encrypted: true, localPort: undefined, fromTrustedProxy: false };
    expect(servedTargetOf(request('auth.example.com'), unknownPort, served)).toMatchObject({ ok: true, origin: 'https://auth.example.com' });
    expect(servedTargetOf(request('10.0.0.5:8443'), unknownPort, served)).toMatchObject({ ok: false, status: 421 });
    expect(servedTargetOf(request('auth.example.com:8443'), unknownPort, served)).toMatchObject({ ok: false, status: 421 });
  });

  test('a listener on its scheme\'s default port: its address with or without the port is its own origin; another port is not', () => {
    const onDefault = servedOriginsOf({ issuer: 'https://auth.example.com:9443', listeners: { https: { host: '10.0.0.5', port: 443 } } });
    const atDefault: ConnectionFacts = { encrypted: true, localPort: 443, fromTrustedProxy: false };
    expect(servedTargetOf(request('10.0.0.5'), atDefault, onDefault)).toMatchObject({ ok: true, origin: 'https://10.0.0.5' });
    expect(servedTargetOf(request('10.0.0.5:443'), atDefault, onDefault)).toMatchObject({ ok: true, origin: 'https://10.0.0.5' });
    expect(servedTargetOf(request('10.0.0.5:444'), atDefault, onDefault)).toMatchObject({ ok: false, status: 421 });
    // The listener's address in an absolute-form target over the other scheme is not its origin.
    expect(servedTargetOf(request('10.0.0.5', {}, 'http://10.0.0.5/token'), atDefault, onDefault)).toMatchObject({ ok: false, status: 421 });
  });

  test('IPv6 listener addresses are bracketed', () => {
    const v6 = servedOriginsOf({ issuer: 'https://auth.example.com', listeners: { https: { host: '::1', port: 8443 } } });
    expect(servedTargetOf(request('[::1]:8443'), tls, v6)).toMatchObject({ ok: true, origin: 'https://[::1]:8443' });
  });
});

describe('clientAddressOf', () => {
  const trusted = (address: string) => address === '10.0.0.2' || address === '10.0.0.3';

  test.each([
    ['an untrusted peer: its own address, whatever it says', '192.0.2.1', '203.0.113.9', '192.0.2.1'],
    ['a trusted peer: the right-most untrusted entry', '10.0.0.2', '198.51.100.1, 203.0.113.9', '203.0.113.9'],
    ['a chain of trusted proxies is walked through', '10.0.0.2', '203.0.113.9, 10.0.0.3', '203.0.113.9'],
    ['a malformed entry ends the walk', '10.0.0.2', '203.0.113.9, junk', '10.0.0.2'],
    ['no header: the peer', '10.0.0.2', undefined, '10.0.0.2'],
  ])('%s', (_label, peer, forwardedFor, expected) => {
    const headers = forwardedFor === undefined ? {} : { 'x-forwarded-for': [forwardedFor] };
    expect(clientAddressOf(headers, peer, trusted)).toBe(expected);
  });
});
