// The console's session, kept by the tokenward browser SDK (/sdk/tokenward.js, the same module
// other web apps use): the access token lives in memory only, the refresh token is the HttpOnly
// cookie set by POST /login {"mode": "cookie"}, refreshing is single-flight across tabs (Web
// Locks + BroadcastChannel) and signing out in one tab signs out every tab.

import { b64urlDecode, createClient, decodeJsonSegment, TokenwardError } from '/sdk/tokenward.js';

export { b64urlDecode };
export const ApiError = TokenwardError;
export const decodeJson = decodeJsonSegment;

// Consoles before the SDK kept {csrf, clientId} in this tab's sessionStorage: carry it over
// once, so that an open console tab upgraded under its feet still refreshes on reload.
try {
  const old = JSON.parse(sessionStorage.getItem('tokenward.console') || 'null');
  if (old && old.csrf && !localStorage.getItem('tokenward.console:session')) {
    localStorage.setItem('tokenward.console:session', JSON.stringify({ seq: 0, csrf: old.csrf, clientId: old.clientId }));
  }
  sessionStorage.removeItem('tokenward.console');
} catch { /* storage disabled: sign in again */ }

export const auth = createClient({ name: 'tokenward.console' });

export const session = {
  get signedIn() { return auth.signedIn; },
  get claims() { return auth.claims; },
  get expiresAt() { return auth.expiresAt / 1000; },
  get scopes() { return new Set(((auth.claims && auth.claims.scope) || '').split(' ').filter(Boolean)); },
  get isAdmin() { return this.scopes.has('admin'); },
  get hasStash() { return auth.hasSession; },
  onChange(fn) { auth.onChange(() => fn()); },
};

/** Sign out in every tab, without calling the server (the session is already over). */
export function forget() { auth.forget(); }

async function parse(resp) {
  if (resp.status === 204) return null;
  const text = await resp.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!resp.ok) {
    const msg = (body && (body.error_description || body.error || body.detail)) || `HTTP ${resp.status}`;
    // in words only: the status stays on the error object, not in the sentence
    throw new ApiError(msg, { status: resp.status, code: (body && body.error) || '' });
  }
  return body;
}

/** A failed sign-in in words: the server's description, without codes or HTTP statuses. */
export function signInError(err) {
  if (err && err.status === 429) return 'Too many sign-in attempts: wait a minute, then try again.';
  let text = (err && err.message) || String(err);
  if (err && err.code && text.startsWith(`${err.code}: `)) text = text.slice(err.code.length + 2);
  text = text.replace(/\s*\((HTTP )?\d{3}\)$/, '').replace(/^HTTP \d{3}$/, 'the server refused the sign-in');
  return `Sign-in failed: ${text}.`.replace(/\.\.$/, '.');
}

export async function signIn(username, password, admin) {
  try {
    await auth.login({ username, password, scope: admin ? 'admin' : undefined, device: 'tokenward console' });
  } catch (err) {
    throw new ApiError(signInError(err), { status: err.status, code: err.code });
  }
}

/** Change your own password; your other sessions end, this one goes on. */
export function changePassword(current, next) {
  return api('POST', '/account/password', { json: { current_password: current, new_password: next } });
}

/** A reload or a new tab: take the token from another tab or refresh from the cookie. */
export function restore() { return auth.restore(); }

export function signOut() { return auth.logout(); }

/** An authenticated call; on 401 invalid_token the SDK refreshes once and repeats it once. */
export async function api(method, path, { json, accept: acceptType, signal, raw } = {}) {
  if (!auth.signedIn) throw new ApiError('sign in first', { status: 401 });
  const headers = {};
  if (json !== undefined) headers['Content-Type'] = 'application/json';
  if (acceptType) headers.Accept = acceptType;
  const resp = await auth.fetch(path, {
    method,
    headers,
    body: json !== undefined ? JSON.stringify(json) : undefined,
    credentials: 'same-origin',
    cache: 'no-store',
    signal,
  });
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
