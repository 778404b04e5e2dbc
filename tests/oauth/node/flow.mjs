// openid-client (v6, on oauth4webapi) against tokenward serve: discovery, authorization code
// + PKCE S256 (the pages driven by form posts), ID token validation with nonce, userinfo, refresh.
// Prints one JSON line with what it saw; any failure exits non-zero with the error.
import * as client from 'openid-client';

const { ISSUER, CLIENT_ID, REDIRECT_URI, USERNAME, PASSWORD } = process.env;

function hidden(html, name) {
  const m = html.match(new RegExp(`name="${name}" value="([^"]*)"`));
  if (!m) throw new Error(`no ${name} in page: ${html.slice(0, 300)}`);
  return m[1].replaceAll('&amp;', '&').replaceAll('&#34;', '"').replaceAll('&#39;', "'");
}

let cookie = '';
async function browse(url, form) {
  const init = { redirect: 'manual', headers: {} };
  if (cookie) init.headers.cookie = cookie;
  if (form) {
    init.method = 'POST';
    init.body = new URLSearchParams(form);
    init.headers['content-type'] = 'application/x-www-form-urlencoded';
  }
  const res = await fetch(url, init);
  const set = res.headers.getSetCookie().find((c) => c.startsWith('__Host-tokenward-signin='));
  if (set) cookie = set.split(';')[0];
  return res;
}

const config = await client.discovery(new URL(ISSUER), CLIENT_ID, undefined, client.None(), {
  execute: [client.allowInsecureRequests],
});
const meta = config.serverMetadata();
const verifier = client.randomPKCECodeVerifier();
const challenge = await client.calculatePKCECodeChallenge(verifier);
const nonce = client.randomNonce();
const state = client.randomState();
const url = client.buildAuthorizationUrl(config, {
  redirect_uri: REDIRECT_URI,
  scope: 'openid profile',
  code_challenge: challenge,
  code_challenge_method: 'S256',
  nonce,
  state,
});

let res = await browse(url);
let html = await res.text();
res = await browse(`${ISSUER}/authorize/signin`, {
  request_id: hidden(html, 'request_id'),
  csrf_token: hidden(html, 'csrf_token'),
  username: USERNAME,
  password: PASSWORD,
});
if (res.status === 200) {
  html = await res.text();
  res = await browse(`${ISSUER}/authorize/consent`, {
    request_id: hidden(html, 'request_id'),
    csrf_token: hidden(html, 'csrf_token'),
    decision: 'allow',
  });
}
const location = res.headers.get('location');
if (!location) throw new Error(`no redirect (HTTP ${res.status})`);

const tokens = await client.authorizationCodeGrant(config, new URL(location), {
  pkceCodeVerifier: verifier,
  expectedNonce: nonce,
  expectedState: state,
  idTokenExpected: true,
});
const claims = tokens.claims();
const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);

console.log(JSON.stringify({
  supportsPKCE: config.serverMetadata().supportsPKCE(),
  response_types: meta.response_types_supported,
  sub: claims.sub,
  aud: claims.aud,
  nonce_ok: claims.nonce === nonce,
  sid: claims.sid,
  userinfo: info,
  refreshed: Boolean(refreshed.access_token) && refreshed.refresh_token !== tokens.refresh_token,
}));
