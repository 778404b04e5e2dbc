// Token inspector: decode in the page, check the signature with WebCrypto against this
// server's public JWKS; the token goes to the server only on "Check on server".
import { api, b64urlDecode, decodeJson, session } from './api.js';
import { $, act, fmtTime, h, relTime } from './ui.js';

const TIME_CLAIMS = new Set(['exp', 'iat', 'nbf', 'auth_time']);

const ALGS = {
  ES256: { imp: { name: 'ECDSA', namedCurve: 'P-256' }, ver: { name: 'ECDSA', hash: 'SHA-256' } },
  ES384: { imp: { name: 'ECDSA', namedCurve: 'P-384' }, ver: { name: 'ECDSA', hash: 'SHA-384' } },
  RS256: { imp: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, ver: { name: 'RSASSA-PKCS1-v1_5' } },
  PS256: { imp: { name: 'RSA-PSS', hash: 'SHA-256' }, ver: { name: 'RSA-PSS', saltLength: 32 } },
  EdDSA: { imp: { name: 'Ed25519' }, ver: { name: 'Ed25519' } },
  Ed25519: { imp: { name: 'Ed25519' }, ver: { name: 'Ed25519' } },
};

let jwksCache = null;

async function jwks(force = false) {
  if (!jwksCache || force) {
    const r = await fetch('/.well-known/jwks.json', { credentials: 'omit', cache: force ? 'reload' : 'default' });
    if (!r.ok) throw new Error(`JWKS: HTTP ${r.status}`);
    jwksCache = await r.json();
  }
  return jwksCache;
}

/** "valid" / "invalid" / a reason it cannot be checked here. */
export async function checkSignature(token, header) {
  if (!globalThis.crypto || !crypto.subtle) return { state: 'unchecked', text: 'WebCrypto unavailable (the page is not a secure context)' };
  const alg = ALGS[header.alg];
  if (!alg) return { state: 'unchecked', text: `${header.alg}: not checkable in the browser${header.alg === 'HS256' ? ' (the HMAC secret is never published)' : ''}` };
  let set = await jwks();
  let jwk = set.keys.find((k) => k.kid === header.kid);
  if (!jwk) { set = await jwks(true); jwk = set.keys.find((k) => k.kid === header.kid); }
  if (!jwk) return { state: 'invalid', text: `no key with kid ${header.kid} in this server's JWKS` };
  if (jwk.alg && jwk.alg !== header.alg && !(jwk.alg === 'EdDSA' && header.alg === 'Ed25519')) {
    return { state: 'invalid', text: `header alg ${header.alg} does not match the key's ${jwk.alg}` };
  }
  const pub = Object.fromEntries(['kty', 'crv', 'x', 'y', 'n', 'e'].filter((k) => jwk[k]).map((k) => [k, jwk[k]]));
  let key;
  try {
    key = await crypto.subtle.importKey('jwk', pub, alg.imp, false, ['verify']);
  } catch (err) {
    return { state: 'unchecked', text: `this browser cannot use ${header.alg} keys (${err.name})` };
  }
  const [h64, p64, s64] = token.split('.');
  const ok = await crypto.subtle.verify(alg.ver, key, b64urlDecode(s64), new TextEncoder().encode(`${h64}.${p64}`));
  return ok ? { state: 'valid', text: `valid — ${header.alg}, key ${header.kid} (checked in this page)` }
    : { state: 'invalid', text: 'invalid signature' };
}

export function mountInspector() {
  const input = $('#inspector-input');
  const out = $('#inspector-out');
  const err = $('#inspector-error');
  const facts = $('#inspector-facts');
  const serverBtn = $('#inspector-server');
  let generation = 0;
  let claims = null;

  function fact(name, value, cls, id) {
    return [h('dt', { text: name }), h('dd', { class: cls || '', id }, value)];
  }

  function countdown() {
    const el = $('#inspector-countdown');
    if (!el || !claims || typeof claims.exp !== 'number') return;
    const left = claims.exp - Date.now() / 1000;
    el.textContent = left > 0 ? `expires in ${relTime(claims.exp).replace(/^in /, '')}` : `expired ${relTime(claims.exp)}`;
    el.className = left > 0 ? (left < 60 ? 'warn' : 'ok') : 'bad';
  }

  async function inspect() {
    const gen = ++generation;
    const token = input.value.trim();
    err.hidden = true;
    claims = null;
    if (!token) { out.hidden = true; return; }
    let header;
    try {
      const parts = token.split('.');
      if (parts.length === 5) throw new Error('an encrypted token (JWE): only the server can read it');
      if (parts.length !== 3) throw new Error(token.startsWith('twr_') ? 'an opaque refresh token: nothing to decode (the server can check it)' : 'not a compact JWS (three dot-separated parts)');
      header = decodeJson(parts[0]);
      claims = decodeJson(parts[1]);
    } catch (e) {
      out.hidden = true;
      err.textContent = `Cannot decode: ${e.message}`;
      err.hidden = false;
      return;
    }
    $('#inspector-header').textContent = JSON.stringify(header, null, 2);
    $('#inspector-claims').tBodies[0].replaceChildren(...Object.entries(claims).map(([k, v]) => h('tr', {},
      h('th', { text: k }),
      h('td', {}, h('code', { text: typeof v === 'string' ? v : JSON.stringify(v) }),
        TIME_CLAIMS.has(k) && typeof v === 'number' ? h('span', { class: 'muted small human' }, ` ${fmtTime(v)} `, h('span', { class: 'rel', dataset: { ts: String(v) }, text: `(${relTime(v)})` })) : null))));
    facts.replaceChildren(
      ...fact('Subject', claims.sub ?? '—'),
      ...fact('Expiry', h('span', { id: 'inspector-countdown' })),
      ...fact('Signature', 'checking…', 'pending', 'inspector-signature'),
      ...fact('Server check', session.isAdmin ? 'not asked (press "Check on server")' : 'needs an admin sign-in', 'muted', 'inspector-status'),
    );
    out.hidden = false;
    countdown();
    let sig;
    try { sig = await checkSignature(token, header); } catch (e) { sig = { state: 'unchecked', text: e.message }; }
    if (gen !== generation) return;
    const el = $('#inspector-signature');
    el.textContent = sig.text;
    el.className = { valid: 'ok', invalid: 'bad' }[sig.state] || 'warn';
  }

  async function serverCheck() {
    const token = input.value.trim();
    if (!token) return;
    await act(serverBtn, async () => {
      const r = await api('POST', '/admin/tokens/verify', { json: { token } });
      const el = $('#inspector-status');
      if (!el) return r;
      let text;
      let cls;
      if (r.active) { text = 'active — accepted by the server'; cls = 'ok'; }
      else if (r.revoked) { text = `revoked — ${r.revocation}`; cls = 'bad revoked'; }
      else { text = `rejected — ${r.error_description || r.error || 'inactive'}`; cls = 'bad'; }
      if (r.revoked && r.active === false && r.error && !/revok|logged out/.test(r.error_description || '')) text += ` (also: ${r.error_description})`;
      el.textContent = text;
      el.className = cls;
      return r;
    }, (r) => (r.active ? 'The server accepts this token.' : r.revoked ? 'The server reports this token as revoked.' : 'The server rejects this token.'));
  }

  input.addEventListener('input', inspect);
  serverBtn.addEventListener('click', serverCheck);
  $('#inspector-clear').addEventListener('click', () => { input.value = ''; inspect(); });
  return {
    tick: countdown,
    refreshAccess() { serverBtn.disabled = !session.isAdmin; serverBtn.title = session.isAdmin ? '' : 'sign in with administrator access'; },
  };
}
