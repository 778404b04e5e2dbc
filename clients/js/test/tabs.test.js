// Two tabs of one origin in code mode, under node --test: the tabs' shared pieces (localStorage,
// BroadcastChannel, Web Locks) are small fakes, so the order of events between tabs is chosen
// by the test. The authorization server is a stub that rotates refresh tokens with no grace
// window: presenting a spent refresh token counts as a reuse and ends the session.
import { test } from 'node:test';
import assert from 'node:assert/strict';

const enc = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');

// -- the browser pieces the SDK looks for, installed before the module is loaded --

// localStorage can be made stale: reads then return the values of the moment it froze, as in
// a renderer process that has not yet heard of another tab's write.
const storage = new Map();
let frozen = null;
const freezeReads = () => { frozen = new Map(storage); };
const thawReads = () => { frozen = null; };
globalThis.localStorage = {
  getItem: (k) => { const m = frozen || storage; return m.has(k) ? m.get(k) : null; },
  setItem: (k, v) => { storage.set(k, String(v)); },
  removeItem: (k) => { storage.delete(k); },
};

/** Channels by name; a channel can stop hearing its peers (its messages are then lost). */
const channels = new Map();
class FakeChannel {
  constructor(name) {
    this.name = name;
    this.deaf = false;
    this.onmessage = null;
    if (!channels.has(name)) channels.set(name, new Set());
    channels.get(name).add(this);
  }

  postMessage(msg) {
    const data = structuredClone(msg);
    for (const peer of channels.get(this.name)) {
      if (peer === this || peer.deaf) continue;
      const open = channels.get(this.name); // a closed channel hears nothing more
      setTimeout(() => { if (open.has(peer) && peer.onmessage) peer.onmessage({ data }); }, 1);
    }
  }

  close() { channels.get(this.name).delete(this); }
}
globalThis.BroadcastChannel = FakeChannel;

/** An exclusive lock per name, granted in request order. */
const held = new Map();
const locks = {
  async request(name, _opts, fn) {
    const prev = held.get(name) || Promise.resolve();
    let release;
    const mine = new Promise((r) => { release = r; });
    held.set(name, prev.then(() => mine));
    await prev;
    try { return await fn(); } finally { release(); }
  },
};
Object.defineProperty(globalThis, 'navigator', { value: { locks }, configurable: true, writable: true });

const { createClient, LoginRequired } = await import('../tokenward.js');

const LIFETIME = 0.05; // seconds: the token is due 40 ms after it arrives

function stubServer() {
  const as = { n: 0, current: null, refreshes: 0, reused: 0, presented: [] };
  as.issue = () => {
    as.n += 1;
    as.current = `rt-${as.n}`;
    const claims = { sub: 'alice', client_id: 'spa', jti: `j${as.n}`, exp: Date.now() / 1000 + LIFETIME };
    return { access_token: `${enc({ alg: 'ES256' })}.${enc(claims)}.c2ln`, token_type: 'Bearer', expires_in: LIFETIME, refresh_token: as.current };
  };
  as.fetch = async (url, init) => {
    const form = new URLSearchParams(String(init.body));
    assert.equal(form.get('grant_type'), 'refresh_token');
    as.presented.push(form.get('refresh_token'));
    const json = (status, body) => new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
    if (form.get('refresh_token') !== as.current) {
      as.reused += 1;
      return json(400, { error: 'invalid_grant', error_description: 'refresh token reused' });
    }
    as.refreshes += 1;
    return json(200, as.issue());
  };
  return as;
}

const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });

/** The IndexedDB record store's contract, in memory: one committed value shared by the tabs. */
function memoryRecordStore() {
  let value;
  return {
    get: async () => (value === undefined ? undefined : structuredClone(value)),
    set: async (v) => { value = structuredClone(v); },
    delete: async () => { value = undefined; },
  };
}

function twoTabs(name, recordStore = null) {
  const as = stubServer();
  const options = { issuer: 'https://as.example', clientId: 'spa', mode: 'code', name, fetch: as.fetch, recordStore };
  return { as, a: createClient(options), b: createClient(options) };
}

test('a tab that missed the other tab\'s rotation takes its refresh token even when the token is due', async () => {
  const { as, a, b } = twoTabs('missed');
  try {
    await a._accept(as.issue(), Date.now()); // tab A signs in; tab B is handed the session
    await sleep(20);
    assert.equal(b.claims.jti, 'j1');

    await sleep(40); // A's token is due
    b._channel.deaf = true; // B does not hear A's rotation
    await a.refresh();
    assert.equal(as.current, 'rt-2');
    b._channel.deaf = false;
    await sleep(100); // the rotated token is due (and expired) before B asks

    const token = await b.accessToken();
    assert.deepEqual(as.presented, ['rt-1', 'rt-2']); // B never presented the spent rt-1
    assert.equal(as.reused, 0);
    assert.equal(b.claims.jti, 'j3');
    assert.equal(token.split('.').length, 3);
    await sleep(20);
    assert.equal(a.claims.jti, 'j3'); // and A was handed B's rotation
  } finally {
    a.close();
    b.close();
  }
});

test('with no tab answering, a tab holding a spent refresh token still tries it once', async () => {
  const { as, a, b } = twoTabs('gone');
  try {
    await a._accept(as.issue(), Date.now());
    await sleep(60);
    b._channel.deaf = true;
    await a.refresh();
    a.close(); // tab A is closed, and with it the only copy of rt-2
    b._channel.deaf = false;
    await sleep(100);
    await assert.rejects(b.accessToken(), LoginRequired);
    assert.deepEqual(as.presented, ['rt-1', 'rt-1']); // a server with a grace window would honour it
    assert.equal(as.reused, 1);
    assert.equal(localStorage.getItem('gone:session'), null); // every tab signs out
  } finally {
    b.close();
  }
});

test('a tab whose localStorage has not caught up reads the rotation from the record store', async () => {
  const { as, a, b } = twoTabs('stale', memoryRecordStore());
  try {
    await a._accept(as.issue(), Date.now());
    await sleep(60);
    b._channel.deaf = true; // B hears nothing of the rotation...
    freezeReads(); // ...and its localStorage still shows the record from before it
    await a.refresh();
    assert.equal(as.current, 'rt-2');
    b._channel.deaf = false;
    await sleep(100);
    await b.accessToken();
    assert.deepEqual(as.presented, ['rt-1', 'rt-2']);
    assert.equal(as.reused, 0);
    assert.equal(b.claims.jti, 'j3');
  } finally {
    thawReads();
    a.close();
    b.close();
  }
});

test('without a record store the stale localStorage misleads the tab (why the store exists)', async () => {
  const { as, a, b } = twoTabs('stale-no-store', null);
  try {
    await a._accept(as.issue(), Date.now());
    await sleep(60);
    b._channel.deaf = true;
    freezeReads();
    await a.refresh();
    b._channel.deaf = false;
    await sleep(100);
    await assert.rejects(b.accessToken(), LoginRequired);
    assert.deepEqual(as.presented, ['rt-1', 'rt-1']);
    assert.equal(as.reused, 1);
  } finally {
    thawReads();
    a.close();
    b.close();
  }
});
