// The module's pure parts under node --test: token parsing and expiry maths.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';

import {
  b64urlDecode, b64urlEncode, decodeJwt, isDue, isInvalidToken, pkceChallenge, randomVerifier,
  refreshMargin, tokenTiming,
} from '../tokenward.js';

const enc = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
const jwt = (claims) => `${enc({ alg: 'ES256', typ: 'at+jwt', kid: 'k1' })}.${enc(claims)}.c2ln`;

test('base64url decoding is strict: padding-free alphabet only', () => {
  assert.deepEqual([...b64urlDecode('AQID')], [1, 2, 3]);
  assert.deepEqual([...b64urlDecode('-_8')], [0xfb, 0xff]);
  assert.throws(() => b64urlDecode('AQ=='), TypeError);
  assert.throws(() => b64urlDecode('A+/'), TypeError);
  assert.throws(() => b64urlDecode('A'), TypeError); // no 6-bit tail is valid
});

test('base64url encoding round-trips and drops padding', () => {
  const bytes = new Uint8Array([0, 251, 255, 1, 2]);
  assert.equal(b64urlEncode(bytes), Buffer.from(bytes).toString('base64url'));
  assert.deepEqual([...b64urlDecode(b64urlEncode(bytes))], [...bytes]);
});

test('decodeJwt returns the claims of a compact JWS and null for anything else', () => {
  assert.deepEqual(decodeJwt(jwt({ sub: 'alice', exp: 1700000000 })), { sub: 'alice', exp: 1700000000 });
  assert.equal(decodeJwt('twr_opaque-refresh-token'), null);
  assert.equal(decodeJwt('a.b'), null);
  assert.equal(decodeJwt(`${enc({})}.${enc([1, 2])}.x`), null); // claims must be an object
  assert.equal(decodeJwt(`${enc({})}.not*b64.x`), null);
  assert.equal(decodeJwt(`${enc({})}.${Buffer.from([0xff, 0xfe]).toString('base64url')}.x`), null); // bad UTF-8
  assert.equal(decodeJwt(undefined), null);
});

test('the refresh margin is 20 % of the lifetime, at most 60 s', () => {
  assert.equal(refreshMargin(2), 0.4);
  assert.equal(refreshMargin(100), 20);
  assert.equal(refreshMargin(300), 60);
  assert.equal(refreshMargin(900), 60);
  assert.equal(refreshMargin(0), 0);
  assert.equal(refreshMargin('nonsense'), 0);
});

test('token timing comes from expires_in, measured from the moment of receipt', () => {
  const t = tokenTiming({ access_token: 'x', expires_in: 900 }, 1_000_000);
  assert.deepEqual(t, { lifetime: 900, expiresAt: 1_000_000 + 900_000, refreshAt: 1_000_000 + 840_000 });
  const short = tokenTiming({ access_token: 'x', expires_in: 2 }, 0);
  assert.equal(short.refreshAt, 1600);
  assert.equal(tokenTiming({ access_token: 'x', expires_in: 10 }, 0, 3).refreshAt, 7000); // explicit margin
});

test('without expires_in the unverified exp claim is used, else 300 s', () => {
  const t = tokenTiming({ access_token: jwt({ exp: 1100 }) }, 1_000_000);
  assert.equal(t.lifetime, 100);
  assert.equal(t.refreshAt, 1_080_000);
  assert.equal(tokenTiming({ access_token: 'opaque' }, 0).lifetime, 300);
  assert.equal(tokenTiming({ access_token: 'opaque', expires_in: -5 }, 0).lifetime, 300);
});

test('a token is due exactly from its refresh time on', () => {
  assert.equal(isDue(1000, 999), false);
  assert.equal(isDue(1000, 1000), true);
  assert.equal(isDue(1000, 5000), true);
  assert.equal(isDue(NaN, 0), true); // unknown timing: refresh
});

test('only a 401 with error="invalid_token" asks for a refresh (RFC 6750 §3.1)', () => {
  assert.equal(isInvalidToken(401, 'Bearer error="invalid_token", error_description="expired"'), true);
  assert.equal(isInvalidToken(401, 'Bearer realm="api", error=invalid_token'), true);
  assert.equal(isInvalidToken(401, 'Bearer realm="api"'), false); // no token was sent
  assert.equal(isInvalidToken(403, 'Bearer error="insufficient_scope"'), false);
  assert.equal(isInvalidToken(401, 'Bearer error="invalid_request"'), false);
  assert.equal(isInvalidToken(401, null), false);
});

test('PKCE: a 43-character verifier and its S256 challenge (RFC 7636 appendix B)', async () => {
  const v = randomVerifier();
  assert.match(v, /^[A-Za-z0-9_-]{43}$/);
  assert.notEqual(v, randomVerifier());
  assert.equal(
    await pkceChallenge('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk'),
    'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
  );
  assert.equal(await pkceChallenge(v), createHash('sha256').update(v).digest('base64url'));
});
