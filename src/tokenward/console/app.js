// The console's shell: sign-in, navigation between screens, the live clock.
import { restore, session, signIn, signOut } from './api.js';
import { mountAdmin } from './admin.js';
import { mountInspector } from './inspector.js';
import { mountSessions } from './sessions.js';
import { $, act, relTime, say, tickRelativeTimes } from './ui.js';

const views = ['signin', 'sessions', 'admin', 'inspector'];
let current = '';

const sessions = mountSessions({ onSignedOut: () => go('signin') });
const admin = mountAdmin();
const inspector = mountInspector();

function go(view) {
  if (location.hash !== `#/${view}`) location.hash = `#/${view}`;
  else render();
}

function wanted() {
  const v = location.hash.replace(/^#\//, '');
  return views.includes(v) ? v : (session.signedIn ? 'sessions' : 'signin');
}

function render() {
  let view = wanted();
  if (!session.signedIn && (view === 'sessions' || view === 'admin')) view = 'signin';
  if (view === 'admin' && !session.isAdmin) {
    say('The admin screen needs a sign-in with administrator access.', 'error');
    view = 'sessions';
  }
  if (view === 'signin' && session.signedIn) view = 'sessions';
  if (current === 'admin' && view !== 'admin') admin.hide();
  for (const v of views) $(`#view-${v}`).hidden = v !== view;
  for (const a of document.querySelectorAll('.tabs a')) {
    a.classList.toggle('active', a.dataset.view === view);
    const needs = a.dataset.needs;
    a.hidden = (needs === 'user' && !session.signedIn) || (needs === 'admin' && !session.isAdmin);
  }
  const entering = current !== view;
  current = view;
  document.body.dataset.view = view;
  if (entering && view === 'sessions') sessions.load();
  if (entering && view === 'admin') admin.show();
  if (view === 'signin') $('#signin-username').focus();
}

function renderWho() {
  const who = $('#who');
  who.hidden = !session.signedIn;
  if (session.signedIn) {
    $('#who-name').textContent = session.claims.sub;
    $('#who-admin').hidden = !session.isAdmin;
  }
  inspector.refreshAccess();
}

function tick() {
  tickRelativeTimes();
  inspector.tick();
  if (session.signedIn) $('#who-exp').textContent = `token ${relTime(session.expiresAt)}`;
}

session.onChange(() => { renderWho(); if (!session.signedIn && (current === 'sessions' || current === 'admin')) render(); });

$('#signin-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = new FormData(e.currentTarget);
  const ok = await act($('#signin-submit'), () => signIn(f.get('username'), f.get('password'), f.get('admin') === 'on'),
    () => `Signed in as ${session.claims.sub}${session.isAdmin ? ' with administrator access' : ''}.`);
  $('#signin-password').value = '';
  if (ok !== undefined || session.signedIn) go('sessions');
});

$('#signout').addEventListener('click', (e) => act(e.currentTarget, async () => {
  await signOut();
  go('signin');
}, 'Signed out: this session was ended.'));

window.addEventListener('hashchange', render);
setInterval(tick, 1000);

// A reload keeps the cookie: refresh silently before showing anything.
(async () => {
  if (session.hasStash) {
    try { await restore(); } catch { say('Please sign in again: the previous session has ended.', 'error'); }
  }
  document.body.dataset.ready = '1';
  renderWho();
  render();
  tick();
})();
