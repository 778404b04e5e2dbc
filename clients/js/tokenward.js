// tokenward browser SDK: keeps an access token for a web page, refreshing it exactly once per
// expiry across every tab of the origin. No dependencies, no build step: an ES module.
//
//   import { createClient } from '/sdk/tokenward.js';
//   const auth = createClient({ clientId: 'tokenward-console' });   // cookie mode
//   await auth.restore();                   // a reload or a new tab: silent, no second sign-in
//   if (!auth.signedIn) await auth.login({ username, password });
//   const resp = await auth.fetch('/userinfo');
//
// Cookie mode (recommended): the refresh token is an HttpOnly cookie that page scripts cannot
// read; the access token lives in memory only. Authorization-code mode (PKCE, RFC 7636) is for
// SPAs on another origin: the SDK then holds the refresh token in memory (see docs/clients.md).
//
// Cross-tab single-flight: refreshing happens under the Web Lock `<name>:refresh`; the holder
// hands the new access token to the other tabs on the BroadcastChannel `<name>`, and a tab that
// gets the lock after another tab refreshed takes that result instead of refreshing again.
// localStorage holds only non-secret bookkeeping (sequence number, expiry, CSRF token, client id).

export const VERSION = '0.1.0';

export class TokenwardError extends Error {
  constructor(message, { status = 0, code = '' } = {}) {
    super(message);
    this.name = 'TokenwardError';
    this.status = status;
    this.code = code;
  }
}

/** No usable session (signed out, revoked, expired): sign in again. */
export class LoginRequired extends TokenwardError {
  constructor(message, opts) { super(message, opts); this.name = 'LoginRequired'; }
}

/** The server could not be reached or answered 5xx/429: retry later; the session is kept. */
export class TemporarilyUnavailable extends TokenwardError {
  constructor(message, opts) { super(message, opts); this.name = 'TemporarilyUnavailable'; }
}

// -- pure helpers (tested under node --test) -----------------------------------------------------

/** Bytes of a base64url segment (RFC 4648 §5, no padding); throws on other characters. */
export function b64urlDecode(segment) {
  if (typeof segment !== 'string' || !/^[A-Za-z0-9_-]*$/.test(segment)) throw new TypeError('not base64url');
  if (segment.length % 4 === 1) throw new TypeError('not base64url');
  const b64 = segment.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((segment.length + 3) % 4);
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i += 1) out[i] = bin.charCodeAt(i);
  return out;
}

/** base64url without padding of bytes. */
export function b64urlEncode(bytes) {
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** The JSON of one base64url segment (strict UTF-8). */
export function decodeJsonSegment(segment) {
  return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(b64urlDecode(segment)));
}

/** The claims of a compact JWS, NOT verified (display and expiry only); null if not a JWS. */
export function decodeJwt(token) {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const claims = decodeJsonSegment(parts[1]);
    return claims !== null && typeof claims === 'object' && !Array.isArray(claims) ? claims : null;
  } catch {
    return null;
  }
}

/** Seconds before expiry to refresh: 20 % of the lifetime, at most 60 s. */
export function refreshMargin(lifetime) {
  const l = Number(lifetime);
  return Number.isFinite(l) && l > 0 ? Math.min(0.2 * l, 60) : 0;
}

/**
 * Timing of a token response received at `receivedAt` (ms since the epoch):
 * `{ lifetime (s), expiresAt (ms), refreshAt (ms) }`. Without `expires_in` the JWT's `exp`
 * (unverified) is used; without both, 300 s.
 */
export function tokenTiming(body, receivedAt = Date.now(), margin = undefined) {
  let lifetime = Number(body && body.expires_in);
  if (!Number.isFinite(lifetime) || lifetime <= 0) {
    const claims = decodeJwt(body && body.access_token);
    const exp = claims && Number(claims.exp);
    lifetime = Number.isFinite(exp) ? Math.max(0, exp - receivedAt / 1000) : 300;
  }
  const m = margin === undefined ? refreshMargin(lifetime) : Math.max(0, Number(margin));
  const expiresAt = receivedAt + lifetime * 1000;
  return { lifetime, expiresAt, refreshAt: expiresAt - m * 1000 };
}

/** True when a token refreshing at `refreshAt` (ms) is due at `now`. */
export function isDue(refreshAt, now = Date.now()) {
  return !(Number(refreshAt) > now);
}

/** A 401 whose challenge says `error="invalid_token"` (RFC 6750 §3.1): a new token may work. */
export function isInvalidToken(status, wwwAuthenticate) {
  if (status !== 401 || !wwwAuthenticate) return false;
  const m = /(?:^|[\s,])error\s*=\s*"?([A-Za-z_]+)"?/.exec(wwwAuthenticate);
  return Boolean(m && m[1] === 'invalid_token');
}

/** A PKCE code verifier (RFC 7636 §4.1): 43 characters from 32 random bytes. */
export function randomVerifier(bytes = 32) {
  const buf = new Uint8Array(bytes);
  crypto.getRandomValues(buf);
  return b64urlEncode(buf);
}

/** The S256 code challenge of a verifier (RFC 7636 §4.2). */
export async function pkceChallenge(verifier) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  return b64urlEncode(new Uint8Array(digest));
}

// -- DPoP (RFC 9449) -------------------------------------------------------------------------------
// The key is a non-extractable WebCrypto ECDSA P-256 key pair kept in IndexedDB (a CryptoKey is
// stored as an object: its private part never becomes bytes a script could read or send).

/** RFC 7638 thumbprint of an EC public JWK (crv, kty, x, y in this order, no whitespace). */
export async function jwkThumbprint(jwk) {
  const canon = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(canon));
  return b64urlEncode(new Uint8Array(digest));
}

/** `ath`: base64url(SHA-256(access token)) (RFC 9449 §4.2). */
export async function accessTokenHash(token) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(token));
  return b64urlEncode(new Uint8Array(digest));
}

/** A new key pair whose private key cannot be exported. */
export function generateDPoPKey() {
  return crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']);
}

/** One value under `key` in an IndexedDB object store (`get`, `set`, `delete`). */
function indexedDBValue(dbName, storeName, key) {
  const open = () => new Promise((resolve, reject) => {
    const req = indexedDB.open(dbName, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(storeName);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  const run = async (mode, fn) => {
    const db = await open();
    try {
      return await new Promise((resolve, reject) => {
        const tx = db.transaction(storeName, mode);
        const req = fn(tx.objectStore(storeName));
        tx.oncomplete = () => resolve(req.result);
        tx.onerror = () => reject(tx.error);
        tx.onabort = () => reject(tx.error);
      });
    } finally { db.close(); }
  };
  return {
    get: () => run('readonly', (s) => s.get(key)),
    set: (value) => run('readwrite', (s) => s.put(value, key)),
    delete: () => run('readwrite', (s) => s.delete(key)),
  };
}

/** An IndexedDB store for one key pair (`get`, `set`, `delete`). */
export function indexedDBKeyStore(name = 'tokenward', dbName = 'tokenward-dpop') {
  return indexedDBValue(dbName, 'keys', name);
}

/**
 * An IndexedDB store for the tabs' rotation record (`{ seq, refreshAt }`). localStorage alone
 * is not enough: each renderer process keeps its own copy and hears of another tab's write
 * later, so the tab that takes the refresh lock next could read the sequence number from before
 * the previous holder's rotation and refresh again. A committed IndexedDB transaction is seen by
 * every transaction started after it, and the holder commits before it releases the lock.
 */
export function indexedDBRecordStore(name = 'tokenward', dbName = 'tokenward-sessions') {
  return indexedDBValue(dbName, 'records', name);
}

/** A DPoP proof JWT for one request (RFC 9449 §4.2); `htu` is sent without query and fragment. */
export async function dpopProof(keyPair, htm, htu, { accessToken = null, nonce = null, iat = null } = {}) {
  const full = await crypto.subtle.exportKey('jwk', keyPair.publicKey);
  const jwk = { crv: full.crv, kty: full.kty, x: full.x, y: full.y };
  const u = new URL(htu, typeof location !== 'undefined' ? location.href : undefined);
  const claims = { jti: randomVerifier(16), htm, htu: u.origin + u.pathname, iat: iat ?? Math.floor(Date.now() / 1000) };
  if (accessToken) claims.ath = await accessTokenHash(accessToken);
  if (nonce) claims.nonce = nonce;
  const enc = (obj) => b64urlEncode(new TextEncoder().encode(JSON.stringify(obj)));
  const input = `${enc({ typ: 'dpop+jwt', alg: 'ES256', jwk })}.${enc(claims)}`;
  // WebCrypto's ECDSA signature is r || s, the JWS form (RFC 7518 §3.4)
  const sig = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, keyPair.privateKey, new TextEncoder().encode(input));
  return `${input}.${b64urlEncode(new Uint8Array(sig))}`;
}

function wantsNonce(resp) {
  if (!resp.headers.get('DPoP-Nonce')) return false;
  return /use_dpop_nonce/.test(resp.headers.get('WWW-Authenticate') || '') || resp.status === 400;
}

// -- the client ----------------------------------------------------------------------------------

async function readBody(resp) {
  const text = await resp.text();
  try { return text ? JSON.parse(text) : null; } catch { return null; }
}

function describe(body, status) {
  if (body && typeof body.error === 'string') {
    return body.error + (body.error_description ? `: ${body.error_description}` : '');
  }
  return (body && body.detail && String(body.detail)) || `HTTP ${status}`;
}

// How long a tab waits for another tab's token before refreshing itself: a tab that held a token
// knows a peer refreshed after it (the record's sequence moved on), so that peer is very likely
// alive; a fresh page only hopes one is.
const PEER_WAIT_MS = 1500;
const NEW_TAB_WAIT_MS = 300;

export class TokenwardClient {
  constructor(options = {}) {
    this.issuer = (options.issuer || '').replace(/\/+$/, '');
    this.clientId = options.clientId || null;
    this.mode = options.mode || 'cookie';
    if (this.mode !== 'cookie' && this.mode !== 'code') throw new TypeError("mode must be 'cookie' or 'code'");
    this.scope = options.scope || null;
    this.redirectUri = options.redirectUri || null;
    this.name = options.name || `tokenward:${this.issuer || 'same-origin'}`;
    this.margin = options.refreshMargin;
    this._fetch = options.fetch || ((...a) => globalThis.fetch(...a));
    this.dpop = Boolean(options.dpop);
    this._dpopStore = options.dpopKeyStore || (this.dpop ? indexedDBKeyStore(this.name) : null);
    this._dpopKey = null;
    const idb = typeof indexedDB !== 'undefined' && indexedDB !== null;
    this._records = options.recordStore !== undefined ? options.recordStore : (idb ? indexedDBRecordStore(this.name) : null);
    this._nonces = new Map(); // origin -> the last DPoP-Nonce it sent
    this._endpoints = {
      token: options.tokenEndpoint || `${this.issuer}/token`,
      login: options.loginEndpoint || `${this.issuer}/login`,
      logout: options.logoutEndpoint || `${this.issuer}/logout`,
      authorize: options.authorizationEndpoint || null,
    };
    this._state = { token: null, claims: null, expiresAt: 0, refreshAt: 0, lifetime: 0, seq: 0, refreshToken: null };
    this._inflight = null;
    this._timer = 0;
    this._listeners = new Set();
    this._waiters = new Set();
    this._channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel(this.name) : null;
    if (this._channel) this._channel.onmessage = (e) => this._onMessage(e.data);
    this._onStorage = (e) => { if (e.key === this._stashKey && e.newValue === null && this.signedIn) this._forget(false); };
    if (typeof addEventListener === 'function') addEventListener('storage', this._onStorage);
  }

  get _stashKey() { return `${this.name}:session`; }
  get signedIn() { return this._state.token !== null; }
  get claims() { return this._state.claims; }
  /** Expiry of the current access token, ms since the epoch (0 when signed out). */
  get expiresAt() { return this._state.expiresAt; }
  /** True when another tab may be signed in (a session record exists for this origin). */
  get hasSession() { return this._stash() !== null; }

  /** Calls `fn()` whenever the sign-in state or the token changes; returns an unsubscribe. */
  onChange(fn) { this._listeners.add(fn); return () => this._listeners.delete(fn); }

  close() {
    clearTimeout(this._timer);
    if (this._channel) this._channel.close();
    if (typeof removeEventListener === 'function') removeEventListener('storage', this._onStorage);
  }

  // -- bookkeeping shared by the tabs (no secrets) --

  _stash() {
    try {
      const s = JSON.parse(localStorage.getItem(this._stashKey) || 'null');
      return s && typeof s === 'object' ? s : null;
    } catch { return null; }
  }

  _writeStash(patch) {
    const s = { ...(this._stash() || {}), ...patch };
    localStorage.setItem(this._stashKey, JSON.stringify(s));
    return s;
  }

  /**
   * The session record with the newest rotation any tab committed: localStorage's copy, with the
   * sequence number and refresh time of the IndexedDB record when that one is ahead. Null when
   * signed out (localStorage's record is removed on logout in every tab).
   */
  async _shared() {
    const stash = this._stash();
    if (!stash || !this._records) return stash;
    let rec = null;
    try { rec = await this._records.get(); } catch { rec = null; /* private mode: localStorage only */ }
    if (rec && typeof rec === 'object' && Number(rec.seq) > (Number(stash.seq) || 0)) {
      return { ...stash, seq: Number(rec.seq), refreshAt: Number(rec.refreshAt) };
    }
    return stash;
  }

  _notify() { for (const fn of this._listeners) { try { fn(this); } catch { /* a listener's bug */ } } }

  _schedule() {
    clearTimeout(this._timer);
    if (!this._state.token) return;
    const wait = Math.max(1000, this._state.refreshAt - Date.now());
    this._timer = setTimeout(() => { this.accessToken().catch(() => {}); }, wait);
  }

  _set(next) {
    this._state = next;
    for (const w of [...this._waiters]) w();
    this._schedule();
    this._notify();
  }

  /**
   * A token response of our own request: keep it, record it for the tabs (committed before the
   * refresh lock is released), hand it over. `shared`: the record as read under the lock (read
   * here when not given).
   */
  async _accept(body, receivedAt, shared = undefined) {
    if (!body || typeof body.access_token !== 'string') throw new TokenwardError('the server sent no access token');
    const t = tokenTiming(body, receivedAt, this.margin);
    const claims = decodeJwt(body.access_token);
    if (!this.clientId && claims && typeof claims.client_id === 'string') this.clientId = claims.client_id;
    const prev = (shared === undefined ? await this._shared() : shared) || {};
    const seq = Math.max(Number(prev.seq) || 0, this._state.seq) + 1;
    if (this._records) {
      try { await this._records.set({ seq, refreshAt: t.refreshAt }); } catch { /* localStorage only */ }
    }
    const refreshToken = this.mode === 'code' ? (body.refresh_token || this._state.refreshToken) : null;
    this._writeStash({
      seq,
      expiresAt: t.expiresAt,
      refreshAt: t.refreshAt,
      clientId: this.clientId,
      csrf: body.csrf_token || prev.csrf || null,
    });
    this._set({ token: body.access_token, claims, expiresAt: t.expiresAt, refreshAt: t.refreshAt, lifetime: t.lifetime, seq, refreshToken });
    this._post({ type: 'token', ...this._handoff() });
  }

  _handoff() {
    const s = this._state;
    return { seq: s.seq, access_token: s.token, expiresAt: s.expiresAt, refreshAt: s.refreshAt, lifetime: s.lifetime, refresh_token: s.refreshToken };
  }

  /** Worth handing to a tab that asks: a live access token, or in code mode the current refresh token. */
  _handsOver() {
    return Date.now() < this._state.expiresAt || (this.mode === 'code' && Boolean(this._state.refreshToken));
  }

  _post(msg) { if (this._channel) { try { this._channel.postMessage(msg); } catch { /* closed */ } } }

  _onMessage(msg) {
    if (!msg || typeof msg !== 'object') return;
    if (msg.type === 'token' && typeof msg.access_token === 'string' && Number(msg.seq) > this._state.seq) {
      this._set({
        token: msg.access_token,
        claims: decodeJwt(msg.access_token),
        expiresAt: Number(msg.expiresAt),
        refreshAt: Number(msg.refreshAt),
        lifetime: Number(msg.lifetime),
        seq: Number(msg.seq),
        refreshToken: this.mode === 'code' ? (msg.refresh_token || null) : null,
      });
      if (!this.clientId && this._state.claims) this.clientId = this._state.claims.client_id || null;
    } else if (msg.type === 'want' && this._state.token && this._handsOver()) {
      this._post({ type: 'token', ...this._handoff() });
    } else if (msg.type === 'logout' && this.signedIn) {
      this._forget(false);
    }
  }

  /** Wait (at most `ms`) until a token with sequence >= `seq` arrives from another tab. */
  _awaitPeer(seq, ms) {
    if (this._state.seq >= seq && this._state.token) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok) => { clearTimeout(timer); this._waiters.delete(check); resolve(ok); };
      const check = () => { if (this._state.seq >= seq && this._state.token) done(true); };
      const timer = setTimeout(() => done(false), ms);
      this._waiters.add(check);
      this._post({ type: 'want' });
    });
  }

  _usable(rejected) {
    const s = this._state;
    if (!s.token) return false;
    if (rejected) return s.token !== rejected && Date.now() < s.expiresAt;
    return !isDue(s.refreshAt);
  }

  _withLock(fn) {
    if (typeof navigator !== 'undefined' && navigator.locks && navigator.locks.request) {
      return navigator.locks.request(`${this.name}:refresh`, { mode: 'exclusive' }, fn);
    }
    return fn();
  }

  _forget(broadcast) {
    const had = this.signedIn;
    clearTimeout(this._timer);
    // every tab forgets together (and the record goes): the next sign-in starts the count again
    this._state = { token: null, claims: null, expiresAt: 0, refreshAt: 0, lifetime: 0, seq: 0, refreshToken: null };
    if (broadcast) {
      localStorage.removeItem(this._stashKey);
      if (this._records) this._records.delete().catch(() => {});
      this._post({ type: 'logout' });
    }
    for (const w of [...this._waiters]) w();
    if (had || broadcast) this._notify();
  }

  /** Forget the session in every tab of this origin without calling the server. */
  forget() { this._forget(true); }

  async _send(url, init) {
    try {
      return await this._fetch(url, { credentials: 'include', cache: 'no-store', ...init });
    } catch (err) {
      throw new TemporarilyUnavailable(`cannot reach ${url}: ${err && err.message ? err.message : err}`);
    }
  }

  /** The DPoP key pair of this origin (every tab shares it), created once. */
  async dpopKey() {
    if (this._dpopKey) return this._dpopKey;
    const load = async () => {
      let kp = await this._dpopStore.get();
      if (!kp) { kp = await generateDPoPKey(); await this._dpopStore.set(kp); }
      return kp;
    };
    const locks = typeof navigator !== 'undefined' && navigator.locks && navigator.locks.request;
    this._dpopKey = locks ? await navigator.locks.request(`${this.name}:dpop-key`, load) : await load();
    return this._dpopKey;
  }

  /** A proof for one request made by this client (with the server's last nonce). */
  async proof(htm, url, accessToken = null) {
    const u = new URL(url, typeof location !== 'undefined' ? location.href : undefined);
    return dpopProof(await this.dpopKey(), htm, u.href, { accessToken, nonce: this._nonces.get(u.origin) || null });
  }

  _keepNonce(url, resp) {
    const nonce = resp.headers.get('DPoP-Nonce');
    if (nonce) this._nonces.set(new URL(url, typeof location !== 'undefined' ? location.href : undefined).origin, nonce);
  }

  async _sendWithProof(url, init) {
    if (!this.dpop) return this._send(url, init);
    let resp;
    for (let attempt = 1; attempt <= 2; attempt++) {
      init.headers = { ...(init.headers || {}), DPoP: await this.proof(init.method || 'POST', url) };
      resp = await this._send(url, init);
      this._keepNonce(url, resp);
      // RFC 9449 §8: the server asks for a nonce: once more with the one it sent
      if (attempt === 2 || resp.status !== 400 || !wantsNonce(resp)) break;
      const body = await readBody(resp.clone());
      if (!body || body.error !== 'use_dpop_nonce') break;
    }
    return resp;
  }

  async _tokenRequest(url, init) {
    const resp = await this._sendWithProof(url, init);
    const receivedAt = Date.now();
    const body = await readBody(resp);
    if (resp.status >= 500 || resp.status === 429) {
      throw new TemporarilyUnavailable(describe(body, resp.status), { status: resp.status, code: (body && body.error) || '' });
    }
    if (!resp.ok) {
      throw new TokenwardError(describe(body, resp.status), { status: resp.status, code: (body && body.error) || '' });
    }
    return { body, receivedAt };
  }

  // -- sign-in --

  /** Cookie mode: POST /login {mode: "cookie"}; the refresh token goes into the HttpOnly cookie. */
  async login({ username, password, scope, device } = {}) {
    const req = { username, password, mode: 'cookie' };
    if (this.clientId) req.client_id = this.clientId;
    if (scope || this.scope) req.scope = scope || this.scope;
    if (device) req.device = device;
    const { body, receivedAt } = await this._tokenRequest(this._endpoints.login, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(req),
    });
    await this._accept(body, receivedAt);
    return this.claims;
  }

  /**
   * A page load: take the current token from another tab, or refresh silently from the cookie
   * (cookie mode) when this origin has a session. Resolves to `signedIn`.
   */
  async restore() {
    if (this.signedIn) return true;
    const stash = this._stash();
    if (!stash) return false;
    if (!this.clientId && stash.clientId) this.clientId = stash.clientId;
    try {
      await this.refresh();
    } catch (err) {
      if (err instanceof LoginRequired) return false;
      throw err;
    }
    return this.signedIn;
  }

  async _metadata() {
    if (this._meta) return this._meta;
    const resp = await this._send(`${this.issuer}/.well-known/oauth-authorization-server`, { credentials: 'omit' });
    const body = await readBody(resp);
    if (!resp.ok || !body || typeof body !== 'object') throw new TokenwardError(`no RFC 8414 metadata (${resp.status})`, { status: resp.status });
    this._meta = body;
    return body;
  }

  /** Code mode: redirect to the authorization endpoint with PKCE S256 and a random state. */
  async loginWithRedirect({ scope, redirectUri } = {}) {
    const authorize = this._endpoints.authorize || (await this._metadata()).authorization_endpoint;
    if (!authorize) throw new TokenwardError('the server publishes no authorization_endpoint');
    const verifier = randomVerifier();
    const state = randomVerifier(16);
    const redirect = redirectUri || this.redirectUri || `${location.origin}${location.pathname}`;
    sessionStorage.setItem(`${this.name}:pkce`, JSON.stringify({ verifier, state, redirect }));
    const params = new URLSearchParams({
      response_type: 'code',
      client_id: this.clientId,
      redirect_uri: redirect,
      state,
      code_challenge: await pkceChallenge(verifier),
      code_challenge_method: 'S256',
    });
    if (scope || this.scope) params.set('scope', scope || this.scope);
    location.assign(`${authorize}${authorize.includes('?') ? '&' : '?'}${params}`);
  }

  /** Code mode: on the redirect URI, exchange `?code=` for tokens. Resolves to `signedIn`. */
  async handleRedirect(url = location.href) {
    const u = new URL(url);
    const code = u.searchParams.get('code');
    const error = u.searchParams.get('error');
    if (!code && !error) return this.signedIn;
    const key = `${this.name}:pkce`;
    const pending = JSON.parse(sessionStorage.getItem(key) || 'null');
    sessionStorage.removeItem(key);
    if (!pending || u.searchParams.get('state') !== pending.state) throw new TokenwardError('the state does not match this sign-in', { code: 'invalid_state' });
    const iss = u.searchParams.get('iss'); // RFC 9207: the answer must come from our server
    if (iss !== null && this.issuer && iss !== this.issuer) throw new TokenwardError('the redirect names another server', { code: 'invalid_issuer' });
    if (error) throw new TokenwardError(`authorization failed: ${error}`, { code: error });
    const { body, receivedAt } = await this._tokenRequest(this._endpoints.token, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      credentials: 'omit',
      body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: pending.redirect, code_verifier: pending.verifier, client_id: this.clientId }),
    });
    await this._accept(body, receivedAt);
    if (typeof history !== 'undefined') history.replaceState(null, '', pending.redirect);
    return true;
  }

  // -- a valid access token --

  /** A valid access token; refreshes (once across all tabs) when it is due. */
  async accessToken() {
    if (this._usable(null)) return this._state.token;
    return this.refresh();
  }

  /**
   * Refresh now, single-flight: one per tab at a time, and under the Web Lock one per origin.
   * `rejected`: the token a server just refused; any other valid token is then good enough.
   */
  async refresh({ rejected = null } = {}) {
    for (;;) {
      if (!this._inflight) {
        this._inflight = this._withLock(() => this._refreshLocked(rejected)).finally(() => { this._inflight = null; });
        return this._inflight;
      }
      const token = await this._inflight; // joins this tab's refresh in flight
      if (!rejected || token !== rejected) return token;
    }
  }

  async _refreshLocked(rejected) {
    if (this._usable(rejected)) return this._state.token; // another tab's result arrived
    const stash = await this._shared();
    if (!stash) {
      this._forget(false);
      throw new LoginRequired('not signed in');
    }
    // Another tab refreshed while this one waited or slept: take its token. In code mode take
    // it even when it is due already: the refresh token this tab holds was spent by that
    // rotation, and presenting it again is a reuse, which ends the session in every tab.
    if (Number(stash.seq) > this._state.seq && (this.mode === 'code' || !isDue(stash.refreshAt))) {
      const wait = this._state.seq > 0 ? PEER_WAIT_MS : NEW_TAB_WAIT_MS;
      if (await this._awaitPeer(Number(stash.seq), wait) && this._usable(rejected)) return this._state.token;
    }
    if (!this.clientId && stash.clientId) this.clientId = stash.clientId;
    const form = new URLSearchParams({ grant_type: 'refresh_token' });
    if (this.clientId) form.set('client_id', this.clientId);
    const headers = { 'Content-Type': 'application/x-www-form-urlencoded' };
    if (this.mode === 'cookie') {
      if (!stash.csrf) { this._forget(true); throw new LoginRequired('not signed in'); }
      headers['X-CSRF-Token'] = stash.csrf;
    } else {
      if (!this._state.refreshToken) {
        if (!(await this._awaitPeer(Number(stash.seq) || 1, NEW_TAB_WAIT_MS)) || !this._state.refreshToken) {
          throw new LoginRequired('no tab holds the session; sign in again');
        }
        if (this._usable(rejected)) return this._state.token;
      }
      form.set('refresh_token', this._state.refreshToken);
    }
    let result;
    try {
      result = await this._tokenRequest(this._endpoints.token, {
        method: 'POST',
        headers,
        body: form,
        credentials: this.mode === 'cookie' ? 'include' : 'omit',
      });
    } catch (err) {
      if (err instanceof TemporarilyUnavailable || !(err instanceof TokenwardError)) throw err;
      // invalid_grant (revoked, reused, expired), a missing cookie or CSRF token: the session is over
      this._forget(true);
      throw new LoginRequired(`the session ended; sign in again (${err.message})`, { status: err.status, code: err.code });
    }
    await this._accept(result.body, result.receivedAt, stash); // no rotation can come between: the lock is held
    return this._state.token;
  }

  /**
   * `fetch` with the bearer token; on a 401 `invalid_token` one refresh and one retry.
   * The body must be replayable (a string, FormData, Blob, URLSearchParams...).
   */
  async fetch(input, init = {}) {
    const base = new Request(input, init);
    const attempt = async (token) => {
      const headers = new Headers(base.headers);
      if (this.dpop) {
        headers.set('Authorization', `DPoP ${token}`);
        headers.set('DPoP', await this.proof(base.method, base.url, token));
      } else {
        headers.set('Authorization', `Bearer ${token}`);
      }
      const resp = await this._fetch(new Request(base.clone(), { headers }));
      if (this.dpop) this._keepNonce(base.url, resp);
      return resp;
    };
    const token = await this.accessToken();
    let resp = await attempt(token);
    if (this.dpop && resp.status === 401 && wantsNonce(resp)) resp = await attempt(token); // RFC 9449 §9
    if (!isInvalidToken(resp.status, resp.headers.get('WWW-Authenticate'))) return resp;
    const fresh = await this.refresh({ rejected: token });
    return attempt(fresh);
  }

  /** End the session on the server (POST /logout) and sign out every tab of this origin. */
  async logout() {
    try {
      if (this.signedIn) {
        const token = this._state.token;
        const init = { method: 'POST', headers: { Authorization: `${this.dpop ? 'DPoP' : 'Bearer'} ${token}` } };
        if (this.dpop) init.headers.DPoP = await this.proof('POST', this._endpoints.logout, token);
        if (this.mode === 'code' && this._state.refreshToken) {
          init.headers['Content-Type'] = 'application/json';
          init.body = JSON.stringify({ refresh_token: this._state.refreshToken });
        }
        await this._send(this._endpoints.logout, init);
      }
    } finally {
      this._forget(true);
    }
  }
}

/** `new TokenwardClient(options)`; see the class for the options. */
export function createClient(options) {
  return new TokenwardClient(options);
}
