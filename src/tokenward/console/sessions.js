// "My sessions": the caller's live sessions; revoke one; log out everywhere.
import { api, changePassword, forget } from './api.js';
import { $, act, confirmable, describeAgent, fillTable, h, timeCell } from './ui.js';

export function sessionRows(list, onRevoke) {
  return list.map((s) => {
    const device = h('div', { class: 'device' },
      h('strong', { text: s.device && s.device !== 'tokenward console' ? s.device : describeAgent(s.user_agent), title: s.user_agent || '' }),
      s.current ? h('span', { class: 'badge badge-current', text: 'this session' }) : null,
      h('div', { class: 'muted small ua', text: s.user_agent || 'no user agent' }));
    const revoke = h('button', { type: 'button', class: 'btn btn-small btn-danger', 'data-sid': s.session_id, text: s.current ? 'Sign out' : 'Revoke' });
    revoke.addEventListener('click', () => onRevoke(s, revoke));
    const row = [device, h('code', { text: s.ip || '—' }), h('span', { text: s.client_id }),
      timeCell(s.created_at), timeCell(s.last_used_at), revoke];
    row.rowClass = s.current ? 'current' : '';
    return row;
  });
}

export function mountSessions({ onSignedOut }) {
  const table = $('#sessions-table');
  const empty = $('#sessions-empty');

  async function loadApps() {
    const apps = await api('GET', '/consents');
    fillTable($('#apps-table'), apps.map((a) => {
      const revoke = h('button', { type: 'button', class: 'btn btn-small btn-danger', 'data-client': a.client_id, text: 'Revoke access' });
      revoke.addEventListener('click', () => act(revoke, async () => {
        await api('DELETE', `/consents/${encodeURIComponent(a.client_id)}`);
        await load();
      }, `Access of ${a.name || a.client_id} revoked; its sessions ended.`));
      return [h('strong', { text: a.name || a.client_id }), h('code', { text: a.scopes.join(' ') }), timeCell(a.granted_at), revoke];
    }));
    $('#apps-empty').hidden = apps.length > 0;
    $('#apps-table').hidden = apps.length === 0;
    const signins = await api('GET', '/sessions/signins');
    fillTable($('#signins-table'), signins.map((s) => {
      const end = h('button', { type: 'button', class: 'btn btn-small btn-danger', text: 'End' });
      end.addEventListener('click', () => act(end, async () => {
        await api('DELETE', `/sessions/signins/${encodeURIComponent(s.sid)}`);
        await load();
      }, 'Browser sign-in ended.'));
      return [h('span', { text: describeAgent(s.user_agent), title: s.user_agent || '' }), h('code', { text: s.ip || '—' }),
        h('span', { text: s.clients.join(', ') || '—' }), timeCell(s.auth_time), end];
    }));
    $('#signins-empty').hidden = signins.length > 0;
    $('#signins-table').hidden = signins.length === 0;
  }

  async function load() {
    await loadApps();
    const list = await api('GET', '/sessions');
    list.sort((a, b) => (b.current - a.current) || (b.last_used_at - a.last_used_at));
    fillTable(table, sessionRows(list, revoke));
    empty.hidden = list.length > 0;
    table.hidden = list.length === 0;
    await loadNotices();
    return list;
  }

  // what the risk engine told this user: "new sign-in from …", "session ended: …"
  async function loadNotices() {
    const box = $('#sessions-notices');
    const notes = await api('GET', '/sessions/notices');
    const ul = box.querySelector('ul');
    ul.replaceChildren(...notes.map((n) => h('li', {},
      timeCell(n.at), h('span', { text: ` ${n.text}` }))));
    box.hidden = notes.length === 0;
  }

  async function revoke(s, button) {
    if (s.current) {
      await act(button, () => api('POST', '/logout'), 'Signed out: this session was ended.');
      forget();
      onSignedOut();
      return;
    }
    await act(button, async () => {
      await api('DELETE', `/sessions/${encodeURIComponent(s.session_id)}`);
      await load();
    }, `Session revoked (${describeAgent(s.user_agent)}); its tokens no longer work.`);
  }

  $('#password-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const form = e.currentTarget;
    const data = new FormData(form);
    act($('#password-submit'), async () => {
      const r = await changePassword(data.get('current_password'), data.get('new_password'));
      form.reset();
      await load();
      return r;
    }, (r) => `Password changed; ${r.other_sessions_revoked} other session(s) ended.`);
  });

  $('#sessions-reload').addEventListener('click', (e) => act(e.currentTarget, load, (l) => `${l.length} live session(s).`));
  const all = $('#logout-all');
  confirmable(all, async () => {
    const out = await act(all, () => api('POST', '/logout-all'), (r) => `Logged out everywhere: ${r.sessions_revoked} session(s) ended.`);
    if (out) { forget(); onSignedOut(); }
  });
  return { load: () => act(null, load) };
}
