// DOM helpers: elements are built with textContent only (no HTML strings; Trusted Types are
// enforced by the page's Content-Security-Policy), status messages, human times.

export const $ = (sel, root = document) => root.querySelector(sel);

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let statusTimer = 0;
const clearers = [];

/** Something to clear (a "shown once" notice) when the next action starts. */
export function clearOnNextAction(fn) { clearers.push(fn); }

/** A new action starts: the status bar and the previous action's notices go away. */
export function clearNotices() {
  clearTimeout(statusTimer);
  $('#status').hidden = true;
  for (const fn of clearers) fn();
}

// Every user action (a click on a button or link, a form sent) starts by clearing them; the
// capture phase runs this before the action's own handler can show anything new.
document.addEventListener('click', (e) => { if (e.target.closest && e.target.closest('button, a')) clearNotices(); }, true);
document.addEventListener('submit', () => clearNotices(), true);

/** Show what happened: kind is "ok" or "error"; a message stays until the next action. */
export function say(message, kind = 'ok') {
  const box = $('#status');
  box.textContent = message;
  box.className = `status status-${kind}`;
  box.hidden = false;
  clearTimeout(statusTimer);
  if (kind === 'ok') statusTimer = setTimeout(() => { box.hidden = true; }, 6000);
}

export function errorText(err) {
  return err && err.message ? err.message : String(err);
}

/** Run an action, report its outcome; buttons are disabled while it runs. */
export async function act(button, fn, okMessage) {
  if (button) button.disabled = true;
  try {
    const result = await fn();
    const msg = typeof okMessage === 'function' ? okMessage(result) : okMessage;
    if (msg) say(msg, 'ok');
    return result;
  } catch (err) {
    say(errorText(err), 'error');
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

/** A destructive button asks for a second click (label from data-confirm) within 4 s. */
export function confirmable(button, fn) {
  const label = button.textContent;
  let armed = 0;
  button.addEventListener('click', () => {
    if (!armed) {
      button.textContent = button.dataset.confirm || 'Click again to confirm';
      button.classList.add('armed');
      armed = setTimeout(() => { button.textContent = label; button.classList.remove('armed'); armed = 0; }, 4000);
      return;
    }
    clearTimeout(armed);
    armed = 0;
    button.textContent = label;
    button.classList.remove('armed');
    fn();
  });
}

const pad = (n) => String(n).padStart(2, '0');

/** Insert ``li`` (an event at ``at``, seconds) into ``list`` newest first by the event's own
 * time, so that a backlog item that arrives late goes where it belongs, not on top. */
export function insertByTime(list, li, at) {
  li.dataset.at = String(at);
  const after = [...list.children].find((el) => Number(el.dataset.at) < at);
  list.insertBefore(li, after || null);
}

/** The time of day for today, the date and time for any other day (local time). */
export function fmtEventTime(ts, now = new Date()) {
  const full = fmtTime(ts);
  const d = new Date(ts * 1000);
  const today = d.getFullYear() === now.getFullYear() && d.getMonth() === now.getMonth() && d.getDate() === now.getDate();
  return today ? full.slice(11) : full;
}

export function fmtTime(ts) {
  if (ts === null || ts === undefined) return '—';
  const d = new Date(ts * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function fmtDuration(seconds) {
  let s = Math.floor(Math.abs(seconds));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hh = Math.floor(s / 3600); s -= hh * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${m}m`;
  if (m) return `${m}m ${pad(s)}s`;
  return `${s}s`;
}

export function relTime(ts) {
  const delta = ts - Date.now() / 1000;
  if (Math.abs(delta) < 1) return 'now';
  return delta > 0 ? `in ${fmtDuration(delta)}` : `${fmtDuration(delta)} ago`;
}

/** An element showing a time and a live relative countdown (updated every second). */
export function timeCell(ts) {
  if (ts === null || ts === undefined) return h('span', { class: 'muted', text: '—' });
  return h('span', { class: 'when', title: new Date(ts * 1000).toISOString() },
    h('span', { text: fmtTime(ts) }), ' ',
    h('span', { class: 'rel', dataset: { ts: String(ts) }, text: `(${relTime(ts)})` }));
}

export function tickRelativeTimes() {
  for (const el of document.querySelectorAll('.rel[data-ts]')) {
    const ts = Number(el.dataset.ts);
    el.textContent = `(${relTime(ts)})`;
    el.classList.toggle('past', ts < Date.now() / 1000);
  }
}

/** "Chrome 156 on Linux" from a user agent (the raw one is in the title). */
export function describeAgent(ua) {
  if (!ua) return 'unknown device';
  const os = /Windows/.test(ua) ? 'Windows' : /Android/.test(ua) ? 'Android'
    : /iPhone|iPad/.test(ua) ? 'iOS' : /Mac OS X/.test(ua) ? 'macOS' : /Linux/.test(ua) ? 'Linux' : null;
  const m = /(Edg|Firefox|Chrome|Chromium|Safari)\/(\d+)/.exec(ua);
  if (!m) return ua.length > 48 ? `${ua.slice(0, 48)}…` : ua;
  const name = { Edg: 'Edge' }[m[1]] || (m[1] === 'Safari' && /Version\//.test(ua) ? 'Safari' : m[1]);
  return os ? `${name} ${m[2]} on ${os}` : `${name} ${m[2]}`;
}

/** Fill a table body; each cell gets data-label (its column) for the narrow-screen layout. */
export function fillTable(table, rows) {
  const labels = [...table.tHead.rows[0].cells].map((c) => c.textContent);
  const body = table.tBodies[0];
  body.replaceChildren(...rows.map((cells) => {
    const tr = h('tr', cells.rowClass ? { class: cells.rowClass } : {});
    cells.forEach((c, i) => tr.append(h('td', { 'data-label': labels[i] || '' }, c)));
    return tr;
  }));
}
