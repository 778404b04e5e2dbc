// The session of this tab: the access token lives in this module's memory only (never in
// localStorage/sessionStorage). The refresh token is the HttpOnly cookie set by
// POST /login {"mode": "cookie"}; refreshing from it needs the CSRF token, which (with the
// client id, neither of them a credential on its own) is kept in sessionStorage so that a
// reload of this tab can refresh silently.

const STASH = 'tokenward.console';
const REFRESH_MARGIN = 60; // seconds before expiry
const listeners = new Set();

const state = { token: null, claims: null, expiresAt: 0, timer: 0, refreshing: null };

export class ApiError extends Error {
  constructor(message, status = 0, code = '') {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function b64urlDecode(segment) {
  if (!/^[A-Za-z0-9_-]*$/.test(segment)) throw new Error('not base64url');
  const b64 = segment.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((segment.length + 3) % 4);
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i += 1) out[i] = bin.charCodeAt(i);
  return out;
}

export function decodeJson(segment) {
  return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(b64urlDecode(segment)));
}

export const session = {
  get signedIn() { return state.token !== null; },
  get claims() { return state.claims; },
  get expiresAt() { return state.expiresAt; },
  get scopes() { return new Set(((state.claims && state.claims.scope) || '').split(' ').filter(Boolean)); },
  get isAdmin() { return this.scopes.has('admin'); },
  get hasStash() { return sessionStorage.getItem(STASH) !== null; },
  onChange(fn) { listeners.add(fn); },
};

function notify() { for (const fn of listeners) fn(); }

function stash() {
  try { return JSON.parse(sessionStorage.getItem(STASH) || 'null'); } catch { return null; }
}

function accept(body) {
  if (!body || typeof body.access_token !== 'string') throw new ApiError('the server sent no access token');
  state.token = body.access_token;
  state.claims = decodeJson(body.access_token.split('.')[1]);
  state.expiresAt = Date.now() / 1000 + Number(body.expires_in || 0);
  const prev = stash() || {};
  sessionStorage.setItem(STASH, JSON.stringify({
    csrf: body.csrf_token || prev.csrf,
    clientId: state.claims.client_id || prev.clientId,
  }));
  clearTimeout(state.timer);
  const lifetime = Number(body.expires_in || 0);
  const wait = Math.max(5, Math.min(lifetime * 0.8, lifetime - REFRESH_MARGIN));
  state.timer = setTimeout(() => { refresh().catch(() => {}); }, wait * 1000);
  notify();
}

export function forget() {
  clearTimeout(state.timer);
  state.token = null;
  state.claims = null;
  state.expiresAt = 0;
  sessionStorage.removeItem(STASH);
  notify();
}

async function parse(resp) {
  if (resp.status === 204) return null;
  const text = await resp.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!resp.ok) {
    const msg = (body && (body.error_description || body.error || body.detail)) || `HTTP ${resp.status}`;
    throw new ApiError(`${msg} (${resp.status})`, resp.status, (body && body.error) || '');
  }
  return body;
}

export async function signIn(username, password, admin) {
  const body = { username, password, mode: 'cookie', device: 'tokenward console' };
  if (admin) body.scope = 'admin';
  const resp = await fetch('/login', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    credentials: 'same-origin',
    cache: 'no-store',
  });
  accept(await parse(resp));
}

/** Silent refresh from the HttpOnly cookie with the CSRF header (one at a time). */
export function refresh() {
  if (state.refreshing) return state.refreshing;
  const s = stash();
  if (!s || !s.csrf || !s.clientId) return Promise.reject(new ApiError('not signed in'));
  state.refreshing = (async () => {
    try {
      const resp = await fetch('/token', {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'X-CSRF-Token': s.csrf },
        body: new URLSearchParams({ grant_type: 'refresh_token', client_id: s.clientId }),
        credentials: 'same-origin',
        cache: 'no-store',
      });
      accept(await parse(resp));
    } catch (err) {
      if (err instanceof ApiError && err.status >= 400 && err.status < 500) forget();
      throw err;
    } finally {
      state.refreshing = null;
    }
  })();
  return state.refreshing;
}

/** An authenticated call; on 401 the token is refreshed once and the call repeated. */
export async function api(method, path, { json, accept: acceptType, signal, raw } = {}) {
  const send = () => {
    const headers = { Authorization: `Bearer ${state.token}` };
    if (json !== undefined) headers['Content-Type'] = 'application/json';
    if (acceptType) headers.Accept = acceptType;
    return fetch(path, {
      method,
      headers,
      body: json !== undefined ? JSON.stringify(json) : undefined,
      credentials: 'same-origin',
      cache: 'no-store',
      signal,
    });
  };
  if (!state.token) throw new ApiError('sign in first', 401);
  let resp = await send();
  if (resp.status === 401 && session.hasStash) {
    await refresh();
    resp = await send();
  }
  if (raw && resp.ok) return resp;
  return parse(resp);
}

/** Follow a Server-Sent Events endpoint with fetch (EventSource cannot send the bearer
 * token in a header, and the token must not go into a URL). Reconnects with Last-Event-ID. */
export function follow(path, onEvent, onState) {
  const ctl = new AbortController();
  let lastId = '';
  let delay = 1000;
  (async () => {
    while (!ctl.signal.aborted) {
      try {
        const resp = await api('GET', path + (lastId ? `${path.includes('?') ? '&' : '?'}after=${lastId}` : ''),
          { accept: 'text/event-stream', signal: ctl.signal, raw: true });
        onState('live');
        delay = 1000;
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const ev = { event: 'message', data: '', id: '' };
            for (const line of block.split('\n')) {
              if (line.startsWith(':')) continue;
              const c = line.indexOf(':');
              const field = c < 0 ? line : line.slice(0, c);
              const val = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
              if (field === 'event') ev.event = val;
              else if (field === 'data') ev.data += (ev.data ? '\n' : '') + val;
              else if (field === 'id') ev.id = val;
            }
            if (ev.id) lastId = ev.id;
            if (ev.data || ev.event !== 'message') onEvent(ev);
          }
        }
      } catch (err) {
        if (ctl.signal.aborted) return;
        onState(`reconnecting: ${err.message || err}`);
      }
      if (ctl.signal.aborted) return;
      onState('reconnecting');
      await new Promise((r) => { setTimeout(r, delay); });
      delay = Math.min(delay * 2, 30000);
    }
  })();
  return () => ctl.abort();
}
