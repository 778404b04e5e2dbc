// Admin: the authorization model — resources (APIs) and their scopes, roles, user roles and
// client permissions. A change that takes scope away applies at each session's next refresh,
// or at once with "revoke now".
import { api } from './api.js';
import { $, act, fillTable, h } from './ui.js';

const words = (s) => (s || '').split(/[\s,]+/).filter(Boolean);

export function mountAccess(onUsersChanged) {
  const resourcesTable = $('#resources-table');
  const rolesTable = $('#roles-table');
  const clientsTable = $('#access-clients-table');

  function removeButton(label, path, done) {
    const b = h('button', { type: 'button', class: 'btn btn-small btn-ghost', text: 'Remove' });
    b.addEventListener('click', () => act(b, async () => {
      await api('DELETE', path);
      await done();
    }, `${label} removed.`));
    return b;
  }

  async function loadResources() {
    const list = await api('GET', '/admin/resources');
    fillTable(resourcesTable, list.map((r) => [
      h('div', {}, h('strong', { text: r.name }), h('br'), h('code', { text: r.identifier })),
      h('span', { text: Object.keys(r.scopes).join(' ') }),
      h('span', { text: r.default_scopes.join(' ') }),
      h('span', { text: [r.access_token_ttl ? `${r.access_token_ttl}s` : '', r.encryption_key ? 'JWE' : ''].filter(Boolean).join(' · ') }),
      r.builtin ? h('span', { class: 'badge', text: 'this server' })
        : removeButton(`Resource ${r.identifier}`, `/admin/resources/${encodeURIComponent(r.identifier)}`, loadResources),
    ]));
  }

  async function loadRoles() {
    const list = await api('GET', '/admin/roles');
    fillTable(rolesTable, list.map((r) => [
      h('strong', { text: r.name }),
      h('span', { text: r.scopes.join(' ') }),
      removeButton(`Role ${r.name}`, `/admin/roles/${encodeURIComponent(r.name)}`, loadRoles),
    ]));
  }

  async function loadClients() {
    const list = await api('GET', '/admin/clients');
    fillTable(clientsTable, list.map((c) => [
      h('strong', { text: c.client_id }),
      h('span', { text: (c.resources || []).join(' ') }),
      h('span', { class: c.scopes.length ? '' : 'muted', text: c.scopes.length ? c.scopes.join(' ') : 'none (gets no token)' }),
    ]));
  }

  function onSubmit(id, fn, message) {
    $(id).addEventListener('submit', (e) => {
      e.preventDefault();
      const form = e.currentTarget;
      const data = new FormData(form);
      act(form.querySelector('button'), async () => {
        const r = await fn(data);
        form.reset();
        return r;
      }, message);
    });
  }

  onSubmit('#resource-add-form', async (d) => {
    const r = await api('POST', '/admin/resources', { json: {
      identifier: d.get('identifier'), name: d.get('name'),
      scopes: words(d.get('scopes')), default_scopes: words(d.get('default_scopes')),
    } });
    await loadResources();
    return r;
  }, (r) => `Resource ${r.identifier} added.`);

  onSubmit('#role-add-form', async (d) => {
    const r = await api('POST', '/admin/roles', { json: { name: d.get('name'), scopes: words(d.get('scopes')) } });
    await loadRoles();
    return r;
  }, (r) => `Role ${r.name} added.`);

  onSubmit('#user-roles-form', async (d) => {
    const username = d.get('username');
    const r = await api('PUT', `/admin/users/${encodeURIComponent(username)}/roles`, { json: {
      roles: words(d.get('roles')), now: d.get('now') === 'on',
    } });
    await onUsersChanged();
    return r;
  }, (r) => `${r.username}: roles ${r.roles.join(', ') || '(none)'}; ${r.sessions_revoked} session(s) revoked.`);

  onSubmit('#client-perms-form', async (d) => {
    const id = d.get('client_id');
    const json = { now: d.get('now') === 'on' };
    if (d.get('resources')) json.resources = words(d.get('resources'));
    if (d.get('scopes') !== null && d.get('scopes') !== '') json.scopes = words(d.get('scopes'));
    const r = await api('PATCH', `/admin/clients/${encodeURIComponent(id)}`, { json });
    await loadClients();
    return r;
  }, (r) => `Client ${r.client_id}: ${r.scopes.join(' ') || 'no scopes'}; ${r.sessions_revoked} session(s) revoked.`);

  return { load: () => Promise.all([loadResources(), loadRoles(), loadClients()]) };
}
