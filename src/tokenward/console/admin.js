// Admin: users, clients, access (APIs, roles), a subject's sessions, signing keys, live
// revocation + security events.
import { mountAccess } from './access.js';
import { api, follow, session } from './api.js';
import { sessionRows } from './sessions.js';
import { $, act, clearOnNextAction, confirmable, fillTable, fmtEventTime, fmtTime, h, insertByTime, say, timeCell } from './ui.js';

const MAX_EVENTS = 100;

export function mountAdmin() {
  const usersTable = $('#users-table');
  const secret = $('#users-secret');
  const clientsTable = $('#clients-table');
  const clientSecret = $('#clients-secret');
  const subjectTable = $('#subject-table');
  const keysTable = $('#keys-table');
  const events = $('#events-list');
  const seenSeq = new Set();
  let stops = [];
  let currentSubject = '';
  clearOnNextAction(() => { secret.hidden = true; secret.replaceChildren(); });

  async function loadUsers() {
    const users = await api('GET', '/admin/users');
    const me = session.claims && session.claims.sub;
    fillTable(usersTable, users.map((u) => {
      // never offer to lock yourself out: no Disable on your own row
      const toggle = u.username === me && !u.disabled ? null
        : h('button', { type: 'button', class: 'btn btn-small', text: u.disabled ? 'Enable' : 'Disable', 'data-user': u.username });
      if (toggle) toggle.addEventListener('click', () => act(toggle, async () => {
        const r = await api('POST', `/admin/users/${encodeURIComponent(u.username)}/${u.disabled ? 'enable' : 'disable'}`);
        await loadUsers();
        return r;
      }, (r) => (u.disabled ? `${u.username} enabled.` : `${u.username} disabled; ${r.sessions_revoked} session(s) revoked.`)));
      const reset = h('button', { type: 'button', class: 'btn btn-small', text: 'Reset password', 'data-user': u.username });
      reset.addEventListener('click', () => act(reset, async () => {
        const r = await api('POST', `/admin/users/${encodeURIComponent(u.username)}/password`, { json: {} });
        secret.replaceChildren('New password for ', h('strong', { text: u.username }), ': ',
          h('code', { class: 'secret', text: r.password }), ' — shown once; hand it over safely.');
        secret.hidden = false;
        return r;
      }, (r) => `Password of ${u.username} reset; ${r.sessions_revoked} session(s) revoked.`));
      const sessions = h('button', { type: 'button', class: 'btn btn-small btn-ghost', text: 'Sessions' });
      const roles = (u.roles || []).join(', ');
      sessions.addEventListener('click', () => { $('#subject-input').value = u.username; showSubject(u.username); });
      return [
        h('strong', { text: u.username }),
        h('span', { class: u.is_admin ? 'badge badge-admin' : 'badge', text: roles || 'no role' }),
        h('span', { class: u.disabled ? 'badge badge-bad' : 'badge badge-ok', text: u.disabled ? 'disabled' : 'active' }),
        timeCell(u.created_at),
        h('div', { class: 'row-actions' }, toggle, reset, sessions),
      ];
    }));
  }

  async function loadClients() {
    const clients = await api('GET', '/admin/clients');
    fillTable(clientsTable, clients.map((c) => {
      const id = encodeURIComponent(c.client_id);
      const toggle = h('button', { type: 'button', class: 'btn btn-small', text: c.disabled ? 'Enable' : 'Disable', 'data-client': c.client_id });
      toggle.addEventListener('click', () => act(toggle, async () => {
        const r = await api('POST', `/admin/clients/${id}/${c.disabled ? 'enable' : 'disable'}`);
        await loadClients();
        return r;
      }, (r) => (c.disabled ? `${c.client_id} enabled.` : `${c.client_id} disabled; ${r.sessions_revoked} session(s) revoked.`)));
      const actions = [toggle];
      if (!c.public) {
        const rotate = h('button', { type: 'button', class: 'btn btn-small', text: 'Rotate secret', 'data-client': c.client_id });
        rotate.addEventListener('click', () => act(rotate, async () => {
          const overlap = Number($('#clients-overlap').value);
          const r = await api('POST', `/admin/clients/${id}/rotate-secret`, { json: { overlap } });
          clientSecret.replaceChildren('New secret for ', h('strong', { text: c.client_id }), ': ',
            h('code', { class: 'secret', text: r.client_secret }), ' — shown once.');
          clientSecret.hidden = false;
          return r;
        }, (r) => (r.previous_secret_expires_at ? `Secret of ${c.client_id} rotated; the old one works until ${fmtTime(r.previous_secret_expires_at)}.` : `Secret of ${c.client_id} rotated; the old one no longer works.`)));
        actions.push(rotate);
      }
      const remove = h('button', { type: 'button', class: 'btn btn-small btn-danger', text: 'Remove', 'data-client': c.client_id, 'data-confirm': 'Click again to remove' });
      confirmable(remove, () => act(remove, async () => {
        const r = await api('DELETE', `/admin/clients/${id}`);
        await loadClients();
        return r;
      }, (r) => `${c.client_id} removed; ${r.sessions_revoked} session(s) revoked.`));
      actions.push(remove);
      return [
        h('strong', { text: c.client_id }),
        h('span', { class: 'badge', text: c.public ? 'public' : 'confidential' }),
        h('span', { class: c.disabled ? 'badge badge-bad' : 'badge badge-ok', text: c.disabled ? 'disabled' : 'active' }),
        timeCell(c.created_at),
        h('div', { class: 'row-actions' }, ...actions),
      ];
    }));
  }

  async function showSubject(sub) {
    currentSubject = sub;
    return act(null, async () => {
      const list = await api('GET', `/admin/subjects/${encodeURIComponent(sub)}/sessions`);
      fillTable(subjectTable, sessionRows(list, (s, button) => act(button, async () => {
        await api('DELETE', `/admin/sessions/${encodeURIComponent(s.session_id)}`);
        await showSubject(sub);
      }, `Session of ${sub} revoked.`)));
      subjectTable.hidden = list.length === 0;
      $('#subject-empty').hidden = list.length > 0;
      return list;
    }, (l) => `${sub}: ${l.length} live session(s).`);
  }

  async function loadKeys() {
    const keys = await api('GET', '/admin/keys');
    const order = { active: 0, next: 1, retired: 2 };
    keys.sort((a, b) => (order[a.state] ?? 3) - (order[b.state] ?? 3));
    fillTable(keysTable, keys.map((k) => {
      const row = [
        h('span', { class: `badge badge-${k.state}`, text: k.state }),
        h('code', { class: 'kid', text: k.kid }),
        h('span', { text: k.alg }),
        timeCell(k.created_at),
        k.state === 'active' ? timeCell(k.next_rotation_at) : h('span', { class: 'muted', text: k.state === 'next' ? 'signs after the next rotation' : `retired ${fmtTime(k.retired_at)}` }),
      ];
      row.rowClass = `key-${k.state}`;
      return row;
    }));
    return keys;
  }

  function addEvent(kind, data, source) {
    const reuse = data.event === 'refresh_token_reuse';
    const cls = ['event', `event-${kind}`];
    if (reuse) cls.push('event-reuse');
    if (data.event === 'revoked' || kind === 'revocation') cls.push('event-revoked');
    let title;
    let detail;
    if (kind === 'revocation') {
      title = `revoked ${data.kind}`;
      detail = `${data.kind}=${data.value} · until ${fmtTime(data.until)}`;
    } else {
      title = reuse ? 'REFRESH TOKEN REUSE — session revoked' : data.event.replace(/_/g, ' ');
      const parts = [];
      for (const k of ['sub', 'kind', 'value', 'sid', 'client_id', 'reason', 'ip', 'sessions']) {
        if (data[k] !== undefined) parts.push(`${k}=${data[k]}`);
      }
      detail = parts.join(' · ');
    }
    const at = Number(data.at) || Date.now() / 1000;
    const li = h('li', { class: cls.join(' ') },
      h('span', { class: 'event-time', title: new Date(at * 1000).toISOString(), text: fmtEventTime(at) }),
      h('span', { class: 'event-title', text: title }),
      h('span', { class: 'event-source', text: source }),
      h('div', { class: 'event-detail', text: detail }));
    insertByTime(events, li, at);
    while (events.children.length > MAX_EVENTS) events.lastChild.remove();
  }

  function onSecurity(ev) {
    if (ev.event !== 'security') return;
    const data = JSON.parse(ev.data);
    if (data.seq !== undefined) seenSeq.add(data.seq);
    addEvent('security', data, 'this instance');
  }

  function onRevocation(ev) {
    if (ev.event !== 'revocation') return;
    const data = JSON.parse(ev.data);
    // the same revocation already shown as this instance's security event (with its reason)
    setTimeout(() => { if (!seenSeq.has(data.seq)) addEvent('revocation', data, 'feed'); }, 300);
  }

  function startStreams() {
    stopStreams();
    const stateEl = $('#events-state');
    const states = {};
    const show = (name) => (s) => {
      states[name] = s;
      const all = Object.values(states);
      const live = all.length === 2 && all.every((x) => x === 'live');
      stateEl.textContent = live ? 'live' : all.find((x) => x !== 'live') || 'connecting';
      stateEl.classList.toggle('on', live);
    };
    stops = [
      follow('/admin/events', onSecurity, show('events')),
      follow('/revocations', onRevocation, show('feed')),
    ];
  }

  function stopStreams() {
    for (const stop of stops) stop();
    stops = [];
  }

  $('#user-add-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const form = e.currentTarget;
    const data = new FormData(form);
    act(form.querySelector('button'), async () => {
      const u = await api('POST', '/admin/users', { json: {
        username: data.get('username'), password: data.get('password'), is_admin: data.get('is_admin') === 'on',
      } });
      form.reset();
      await loadUsers();
      return u;
    }, (u) => `User ${u.username} added.`);
  });

  $('#subject-form').addEventListener('submit', (e) => {
    e.preventDefault();
    showSubject($('#subject-input').value.trim());
  });
  const revokeSubject = $('#subject-revoke');
  confirmable(revokeSubject, () => {
    const sub = $('#subject-input').value.trim() || currentSubject;
    if (!sub) { say('Type a subject first.', 'error'); return; }
    act(revokeSubject, async () => {
      const r = await api('POST', `/admin/subjects/${encodeURIComponent(sub)}/revoke`);
      await showSubject(sub);
      return r;
    }, (r) => `Subject ${sub} revoked: ${r.sessions_revoked} session(s) ended, its access tokens are refused.`);
  });

  const rotate = $('#keys-rotate');
  confirmable(rotate, () => act(rotate, async () => {
    await api('POST', '/admin/keys/rotate');
    const keys = await loadKeys();
    return keys.find((k) => k.state === 'active');
  }, (active) => `Keys rotated: now signing with ${active ? active.kid : '?'}.`));

  const access = mountAccess(loadUsers);

  return {
    async show() {
      await act(null, () => Promise.all([loadUsers(), loadClients(), loadKeys(), access.load()]));
      startStreams();
    },
    hide: stopStreams,
  };
}
