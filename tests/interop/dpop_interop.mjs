// DPoP interop: proofs made by npm `dpop` and `oauth4webapi` drive tokenward's /token and
// /userinfo; npm `jose` verifies the DPoP-bound access token and its cnf.jkt.
// Usage: node dpop_interop.mjs BASE USERNAME PASSWORD CLIENT_ID   (prints one JSON object)
import * as dpop from 'dpop';
import * as jose from 'jose';
import * as oauth from 'oauth4webapi';

const [base, username, password, clientId] = process.argv.slice(2);
const out = {};

async function post(path, form, proof) {
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  if (proof) headers.dpop = proof;
  const r = await fetch(`${base}${path}`, { method: 'POST', headers, body: new URLSearchParams(form) });
  return { status: r.status, nonce: r.headers.get('dpop-nonce'), body: await r.json().catch(() => null) };
}

async function get(path, token, proof) {
  const r = await fetch(`${base}${path}`, { headers: { authorization: `DPoP ${token}`, dpop: proof } });
  return { status: r.status, challenge: r.headers.get('www-authenticate'), nonce: r.headers.get('dpop-nonce'), body: await r.json().catch(() => null) };
}

// -- npm `dpop`, with each algorithm the server lists --
const login = { grant_type: 'password', username, password, client_id: clientId };
for (const alg of ['ES256', 'Ed25519', 'PS256', 'RS256']) {
  const kp = await dpop.generateKeyPair(alg);
  const htu = `${base}/token`;
  let r = await post('/token', login, await dpop.generateProof(kp, htu, 'POST'));
  let nonce = null;
  if (r.status === 400 && r.body && r.body.error === 'use_dpop_nonce') {
    nonce = r.nonce;
    r = await post('/token', login, await dpop.generateProof(kp, htu, 'POST', nonce));
  }
  const res = { token: r.status, token_type: r.body && r.body.token_type };
  if (r.status === 200) {
    nonce = r.nonce || nonce;
    const at = r.body.access_token;
    const jwk = await crypto.subtle.exportKey('jwk', kp.publicKey);
    res.jkt_matches = jose.decodeJwt(at).cnf?.jkt === (await jose.calculateJwkThumbprint(jwk, 'sha256'));
    const ui = await get('/userinfo', at, await dpop.generateProof(kp, `${base}/userinfo`, 'GET', nonce, at));
    res.userinfo = ui.status;
    res.sub = ui.body && ui.body.sub;
    const rt = await post('/token', { grant_type: 'refresh_token', refresh_token: r.body.refresh_token, client_id: clientId },
      await dpop.generateProof(kp, htu, 'POST', nonce));
    res.refresh = rt.status;
    res.refresh_token_type = rt.body && rt.body.token_type;
    // rejections with proofs this package made
    const other = await dpop.generateKeyPair('ES256');
    const stolen = await post('/token', { grant_type: 'refresh_token', refresh_token: rt.body.refresh_token, client_id: clientId },
      await dpop.generateProof(other, htu, 'POST', nonce));
    res.other_key = stolen.body && stolen.body.error;
    const wrongHtm = await get('/userinfo', at, await dpop.generateProof(kp, `${base}/userinfo`, 'POST', nonce, at));
    res.wrong_htm = wrongHtm.body && wrongHtm.body.error;
    const noAth = await get('/userinfo', at, await dpop.generateProof(kp, `${base}/userinfo`, 'GET', nonce));
    res.no_ath = noAth.body && noAth.body.error;
    const proof = await dpop.generateProof(kp, `${base}/userinfo`, 'GET', nonce, at);
    await get('/userinfo', at, proof);
    const replay = await get('/userinfo', at, proof);
    res.replay = replay.body && replay.body.error;
  }
  out[`dpop_${alg}`] = res;
}

// -- oauth4webapi: discovery, a DPoP handle, its nonce handling --
{
  const opts = { [oauth.allowInsecureRequests]: true };
  const issuer = new URL(base);
  const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { ...opts, algorithm: 'oauth2' }));
  const client = { client_id: clientId };
  const kp = await oauth.generateKeyPair('ES256');
  const DPoP = oauth.DPoP(client, kp);
  const retry = async (fn) => {
    try { return await fn(); } catch (err) {
      if (oauth.isDPoPNonceError(err)) return fn(); // the handle kept the server's nonce
      throw err;
    }
  };
  const res = { algs: as.dpop_signing_alg_values_supported };
  const tokens = await retry(async () => oauth.processGenericTokenEndpointResponse(as, client,
    await oauth.genericTokenEndpointRequest(as, client, oauth.None(), 'password', { username, password }, { ...opts, DPoP })));
  res.token_type = tokens.token_type;
  // a 401 use_dpop_nonce challenge is thrown by the call itself (isDPoPNonceError)
  const ui = await retry(async () => oauth.protectedResourceRequest(
    tokens.access_token, 'GET', new URL(`${base}/userinfo`), undefined, undefined, { ...opts, DPoP }));
  res.userinfo = ui.status;
  res.sub = (await ui.json()).sub;
  const refreshed = await retry(async () => oauth.processRefreshTokenResponse(as, client,
    await oauth.refreshTokenGrantRequest(as, client, oauth.None(), tokens.refresh_token, { ...opts, DPoP })));
  res.refresh_token_type = refreshed.token_type;
  // jose verifies the bound access token against our JWKS, and its cnf.jkt is the handle's key
  const JWKS = jose.createRemoteJWKSet(new URL(as.jwks_uri));
  const { payload, protectedHeader } = await jose.jwtVerify(refreshed.access_token, JWKS, { issuer: as.issuer, typ: 'at+jwt' });
  const jwk = await crypto.subtle.exportKey('jwk', kp.publicKey);
  res.jose_typ = protectedHeader.typ;
  res.jose_jkt_matches = payload.cnf.jkt === (await jose.calculateJwkThumbprint(jwk, 'sha256'));
  out.oauth4webapi = res;
}

console.log(JSON.stringify(out));
