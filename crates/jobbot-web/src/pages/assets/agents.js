// The agents dashboard: a first render from GET /api/agents, then live from /api/ws (state
// changes, flood waits, finished messages) without reloading; countdowns are computed here from
// the wall-clock instants the API gives. Bulk add, remove, pause / resume, and a usage chart.
'use strict';

const tableBody = document.getElementById('agents-body');
const liveStatus = document.getElementById('live-status');
const agentsStatus = document.getElementById('agents-status');
// session → {session_name, phone, channels, live}
const agents = new Map();

function stateOf(agent, now) {
  const live = agent.live;
  if (!live) return {key: 'idle'};
  const link = (live.link && live.link.state) || 'connecting';
  // What the operator did, or a session that cannot work, says more than a cooldown.
  if (['paused', 'dead', 'not_logged_in', 'stopped', 'elsewhere_in_cluster'].includes(link)) {
    return {key: link};
  }
  if (live.flood_wait_until_unix_ms && live.flood_wait_until_unix_ms > now) {
    return {key: 'flood_wait', until: live.flood_wait_until_unix_ms};
  }
  if (link === 'ready' && live.peer_flood_until_unix_ms && live.peer_flood_until_unix_ms > now) {
    return {key: 'peer_flood', until: live.peer_flood_until_unix_ms};
  }
  return {key: link};
}

function countdown(until, now) {
  const seconds = Math.max(0, Math.ceil((until - now) / 1000));
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  const rest = String(seconds % 60).padStart(2, '0');
  return hours ? `${hours}:${String(minutes).padStart(2, '0')}:${rest}` : `${minutes}:${rest}`;
}

function stateCell(agent, now) {
  const state = stateOf(agent, now);
  const badge = el('span', {class: 'badge state-' + state.key, text: t('state_' + state.key)});
  const cell = el('td', {class: 'state-cell', 'data-label': t('col_state')}, badge);
  if (state.until) cell.append(' ', el('span', {class: 'countdown mono', text: countdown(state.until, now)}));
  const paused = agent.live && agent.live.link && agent.live.link.state === 'paused';
  return {cell, key: state.key, paused};
}

// Updates the table in place: a row per agent, and its buttons are replaced only when what
// they do changes, so a live update never swallows a click. Rows already in their sorted
// place are left where they are: moving a row (even to the same spot) takes the focus out of
// it, and the keys typed into an inline login then land nowhere.
function render() {
  const now = Date.now();
  const focused = tableBody.contains(document.activeElement) ? document.activeElement : null;
  let next = tableBody.firstElementChild;
  const place = (node) => {
    if (node === next) next = node.nextElementSibling;
    else tableBody.insertBefore(node, next);
  };
  document.getElementById('no-agents').hidden = agents.size > 0;
  const sorted = [...agents.values()].sort((a, b) => a.session_name.localeCompare(b.session_name));
  const wanted = new Set(sorted.map((agent) => agent.session_name));
  tableBody.querySelectorAll('tr[data-session]').forEach((row) => {
    if (!wanted.has(row.dataset.session)) row.remove();
  });
  for (const agent of sorted) {
    let row = tableBody.querySelector(`tr[data-session="${CSS.escape(agent.session_name)}"]`);
    if (!row) {
      row = el('tr', {'data-session': agent.session_name},
        el('td', {'data-label': t('col_agent')}), el('td', {class: 'channels-cell'}), el('td', {class: 'state-cell'}),
        el('td', {class: 'num', 'data-label': t('col_headroom')}), el('td', {class: 'num rate-cell', 'data-label': t('col_rate')}),
        el('td', {class: 'num', 'data-label': t('col_sent')}),
        el('td', {class: 'error-cell'}), el('td', {class: 'actions-cell'}));
    }
    place(row); // keeps the sorted order, the agent's login row (if open) right under it
    const loginRow = tableBody.querySelector(`tr[data-login-for="${CSS.escape(agent.session_name)}"]`);
    if (loginRow) place(loginRow);
    const cells = row.children;
    const live = agent.live || {};
    const state = stateCell(agent, now);
    row.dataset.state = state.key;
    cells[0].replaceChildren(el('b', {}, agent.session_name), el('br'), el('span', {class: 'muted mono'}, agent.phone || ''));
    const channelsKey = (agent.channels || []).join(',');
    if (cells[1].dataset.key !== channelsKey) {
      cells[1].dataset.key = channelsKey;
      cells[1].replaceChildren(...(agent.channels || []).map((channel) =>
        el('span', {class: 'tag'}, channel, ' ', el('button', {type: 'button', class: 'tag-remove',
          title: t('remove'), 'aria-label': t('remove') + ' ' + channel,
          onclick: () => removeFromChannel(agent.session_name, channel)}, '✕'))));
    }
    cells[2].replaceWith(state.cell);
    cells[3].textContent = agent.live ? String(live.pacing_headroom) : '–';
    cells[4].replaceChildren(...rateCell(live));
    cells[5].textContent = agent.live ? `${live.sent_last_minute} / ${live.sent_last_hour} / ${live.sent_last_day}` : '–';
    cells[6].textContent = live.last_error ? describeError(live.last_error.error) : '';
    const action = state.paused ? 'resume' : 'pause';
    // A session without a (working) login gets its login flow right here.
    const canLogIn = state.key === 'not_logged_in' || state.key === 'dead';
    const actions = action + (canLogIn ? ' login' : '');
    if (cells[7].dataset.action !== actions) {
      cells[7].dataset.action = actions;
      const buttons = [el('button', {type: 'button', class: action,
        onclick: () => pauseOrResume(action, agent.session_name)}, t(action))];
      if (canLogIn) {
        buttons.push(' ', el('button', {type: 'button', class: 'login',
          onclick: () => openLogin(agent.session_name)}, t('agent_login')));
      }
      cells[7].replaceChildren(...buttons);
    }
  }
  // A row that did have to move (the order changed) gets its focus back in the same task, so
  // no keystroke is lost.
  if (focused && focused.isConnected && document.activeElement !== focused) focused.focus();
}

// Opens the login flow of `session` in a row under the agent's, and starts it.
function openLogin(session) {
  const selector = `tr[data-login-for="${CSS.escape(session)}"]`;
  const open = tableBody.querySelector(selector);
  if (open) open.remove();
  const row = el('tr', {class: 'login-row', 'data-login-for': session});
  const cell = el('td', {colspan: '8'});
  cell.append(loginFlow(session, () => {
    loadAgents();
  }, true));
  row.append(cell);
  const agentRow = tableBody.querySelector(`tr[data-session="${CSS.escape(session)}"]`);
  if (agentRow) agentRow.after(row); else tableBody.append(row);
}

// Rates are thousandths of a call a minute in the API; shown per minute, with one decimal when
// the learner has settled between whole numbers.
function perMinute(milli) {
  const value = milli / 1000;
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

// The learned send rate against its ceiling, and under it every other class of call (resolves,
// joins, topics) whose rate was lowered: each is another method, limited on its own.
function rateCell(live) {
  if (live.learned_milli_per_minute === undefined) return ['–'];
  const send = `${perMinute(live.learned_milli_per_minute)} / ${perMinute(live.ceiling_milli_per_minute)}`;
  const parts = [el('span', {class: 'mono'}, send)];
  for (const call of live.calls || []) {
    if (call.class === 'send_message' || call.learned_milli_per_minute >= call.ceiling_milli_per_minute) continue;
    parts.push(el('br'), el('span', {class: 'muted mono', 'data-class': call.class},
      `${t('rate_' + call.class)} ${perMinute(call.learned_milli_per_minute)} / ${perMinute(call.ceiling_milli_per_minute)}`));
  }
  return parts;
}

function describeError(error) {
  if (!error) return '';
  if (typeof error === 'string') return error;
  const kind = error.kind || error.type || Object.keys(error)[0] || '';
  const detail = error.seconds !== undefined ? ` ${error.seconds} s` : '';
  return kind + detail;
}

async function loadAgents() {
  const reply = await api('GET', '/api/agents');
  if (!reply.ok) { agentsStatus.textContent = errorMessage(reply); return; }
  const fresh = new Map();
  for (const agent of reply.body.agents) {
    const known = agents.get(agent.session_name);
    // A flood wait the WebSocket announced is kept even if this read raced ahead of it.
    if (known && known.live && agent.live) {
      const local = known.live.flood_wait_until_unix_ms || 0;
      if (local > (agent.live.flood_wait_until_unix_ms || 0)) agent.live.flood_wait_until_unix_ms = local;
    }
    fresh.set(agent.session_name, agent);
  }
  agents.clear();
  fresh.forEach((agent, session) => agents.set(session, agent));
  render();
}

let refreshTimer = null;
function refreshSoon() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => { refreshTimer = null; loadAgents(); }, 1500);
}

function applyView(view) {
  const session = view.session;
  const agent = agents.get(session) || {session_name: session, phone: null, channels: view.channels, live: null};
  const local = agent.live ? agent.live.flood_wait_until_unix_ms || 0 : 0;
  agent.live = view;
  if (local > (view.flood_wait_until_unix_ms || 0)) view.flood_wait_until_unix_ms = local;
  agents.set(session, agent);
}

function onLiveMessage(message) {
  const agent = agents.get(message.session);
  switch (message.type) {
    case 'snapshot':
      (message.agents || []).forEach(applyView);
      render();
      break;
    case 'agent_state':
      if (agent) {
        agent.live = agent.live || {};
        agent.live.link = message.state;
        render();
      }
      refreshSoon();
      break;
    case 'flood_wait':
      if (agent) {
        agent.live = agent.live || {};
        const until = Date.now() + message.seconds * 1000;
        agent.live.flood_wait_until_unix_ms = Math.max(agent.live.flood_wait_until_unix_ms || 0, until);
        render();
      }
      refreshSoon();
      break;
    case 'peer_flood':
    case 'outbox_finished':
      refreshSoon();
      break;
    default:
      break;
  }
}

let reconnectDelay = 1000;
function connectLive() {
  const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
  const socket = new WebSocket(scheme + location.host + '/api/ws');
  socket.addEventListener('open', () => {
    reconnectDelay = 1000;
    liveStatus.dataset.live = 'on';
    liveStatus.textContent = t('live_connected');
  });
  socket.addEventListener('message', (event) => {
    try { onLiveMessage(JSON.parse(event.data)); } catch (_) { /* a message this page does not know */ }
  });
  socket.addEventListener('close', () => {
    liveStatus.dataset.live = 'off';
    liveStatus.textContent = t('live_disconnected');
    setTimeout(connectLive, reconnectDelay);
    reconnectDelay = Math.min(reconnectDelay * 2, 15000);
  });
}

async function pauseOrResume(action, session) {
  const reply = await api('POST', '/api/agents/' + action, {sessions: [session]});
  agentsStatus.textContent = reply.ok ? '' : errorMessage(reply);
  loadAgents();
}

async function removeFromChannel(session, channel) {
  if (!confirm(t('confirm_remove_agent', {name: session, channel}))) return;
  const current = await api('GET', '/api/channels/' + encodeURIComponent(channel));
  if (!current.ok) { agentsStatus.textContent = errorMessage(current); return; }
  const reply = await api('DELETE', '/api/channels/' + encodeURIComponent(channel) + '/agents/' +
    encodeURIComponent(session), undefined, {ifMatch: current.body.revision});
  agentsStatus.textContent = reply.ok ? '' : (reply.status === 409 ? t('conflict') : errorMessage(reply));
  loadAgents();
}

document.getElementById('bulk-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const slot = document.querySelector('[data-error-for="lines"]');
  const result = document.getElementById('bulk-result');
  slot.textContent = '';
  result.textContent = '';
  const lines = document.getElementById('bulk-lines').value.split('\n');
  const add = [];
  const lineOf = [];
  const problems = [];
  lines.forEach((line, index) => {
    const parts = line.trim().split(/\s+/).filter((part) => part);
    if (parts.length === 0) return;
    if (parts.length !== 2) { problems.push(t('bulk_line_error', {line: index + 1})); return; }
    add.push({phone: parts[0], session_name: parts[1]});
    lineOf.push(index + 1);
  });
  if (problems.length || add.length === 0) {
    slot.textContent = problems.length ? problems.join('; ') : t('err_required');
    return;
  }
  const channel = document.getElementById('bulk-channel').value;
  const current = await api('GET', '/api/channels/' + encodeURIComponent(channel));
  if (!current.ok) { slot.textContent = errorMessage(current); return; }
  const reply = await api('POST', '/api/channels/' + encodeURIComponent(channel) + '/agents/bulk',
    {revision: current.body.revision, add});
  if (reply.ok) {
    result.textContent = t('bulk_added', {count: add.length});
    document.getElementById('bulk-lines').value = '';
    loadAgents();
  } else if (reply.body && reply.body.problems) {
    slot.textContent = reply.body.problems.map((problem) => {
      const match = /^add\[(\d+)\]/.exec(problem.path);
      const where = match ? t('bulk_line_error', {line: lineOf[Number(match[1])]}).split(':')[0] : problem.path;
      return where + ': ' + problem.message;
    }).join('; ');
  } else {
    slot.textContent = reply.status === 409 ? t('conflict') : errorMessage(reply);
  }
});


// Sent per hour over the last day, summed over the agents: inline SVG bars, no library.
async function loadChart() {
  const chart = document.getElementById('usage-chart');
  const reply = await api('GET', '/api/stats');
  if (!reply.ok) return;
  const hour = 3600 * 1000;
  const end = Math.floor(Date.now() / hour) * hour;
  const start = end - 23 * hour;
  const totals = new Array(24).fill(0);
  for (const row of reply.body.sent_per_agent_hour || []) {
    const slot = Math.round((row.start_unix_ms - start) / hour);
    if (slot >= 0 && slot < 24) totals[slot] += row.sent;
  }
  chart.textContent = '';
  if (totals.every((total) => total === 0)) {
    chart.append(el('p', {class: 'muted', text: t('chart_empty')}));
    return;
  }
  const max = Math.max(...totals);
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 240 110');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', t('chart_title'));
  totals.forEach((total, index) => {
    const height = Math.round((total / max) * 90);
    const bar = document.createElementNS(ns, 'rect');
    bar.setAttribute('x', String(index * 10 + 1));
    bar.setAttribute('y', String(95 - height));
    bar.setAttribute('width', '8');
    bar.setAttribute('height', String(Math.max(height, total > 0 ? 1 : 0)));
    bar.setAttribute('class', 'bar');
    const title = document.createElementNS(ns, 'title');
    title.textContent = new Date(start + index * hour).toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'}) + ': ' + total;
    bar.append(title);
    svg.append(bar);
  });
  const label = (x, text, anchor) => {
    const node = document.createElementNS(ns, 'text');
    node.setAttribute('x', String(x));
    node.setAttribute('y', '108');
    node.setAttribute('text-anchor', anchor);
    node.setAttribute('class', 'axis');
    node.textContent = text;
    svg.append(node);
  };
  const time = (at) => new Date(at).toLocaleTimeString([], {hour: '2-digit', minute: '2-digit'});
  label(0, time(start), 'start');
  label(240, time(end), 'end');
  chart.append(svg, el('p', {class: 'muted', text: 'max ' + max}));
}

// What needs a look: recent agent events, messages that ended undelivered (those that may have
// been delivered by an account that is gone first), and the background tasks' states.
function describeEvent(event) {
  const key = 'event_' + event.kind;
  return t(key, {seconds: event.seconds}) + (event.reason ? ` (${event.reason})` : '');
}

function fillList(list, items, empty) {
  list.replaceChildren(...(items.length ? items : [el('li', {class: 'muted', text: t(empty)})]));
}

async function loadAttention() {
  const stats = await api('GET', '/api/stats');
  if (stats.ok) {
    const time = (at) => new Date(at).toLocaleString();
    fillList(document.getElementById('agent-events'), (stats.body.flood_events || []).slice(0, 20).map((event) =>
      el('li', {}, el('span', {class: 'muted mono', text: time(event.at) + ' '}), el('b', {text: event.agent + ' '}), describeEvent(event))), 'events_empty');
    fillList(document.getElementById('tasks'), (stats.body.tasks || []).map((task) =>
      el('li', {'data-task': task.name}, el('b', {text: task.name + ' '}),
        el('span', {class: 'badge state-' + task.state, text: task.state}),
        ' ' + t('task_restarts', {count: task.restarts}) + (task.last_failure ? ' — ' + task.last_failure : ''))), 'events_empty');
  }
  const ended = await api('GET', '/api/outbox/ended');
  if (ended.ok) {
    const messages = ended.body.messages.slice().sort((a, b) => Number(b.may_have_been_delivered) - Number(a.may_have_been_delivered));
    fillList(document.getElementById('undelivered'), messages.slice(0, 20).map((message) =>
      el('li', {class: message.may_have_been_delivered ? 'warning' : ''},
        el('span', {class: 'mono', text: `#${message.id} ${message.kind} · ${message.channel_id} `}),
        message.may_have_been_delivered ? el('b', {text: t('may_have_been_delivered') + ': '}) : '',
        message.reason)), 'undelivered_empty');
  }
}

// Countdowns tick here, and a flood wait that ended flips back, without a request. Only the
// state cells change, so a button under the pointer is never replaced mid-click.
function tick() {
  const now = Date.now();
  tableBody.querySelectorAll('tr[data-session]').forEach((row) => {
    const agent = agents.get(row.dataset.session);
    if (!agent) return;
    const state = stateCell(agent, now);
    row.dataset.state = state.key;
    row.children[2].replaceWith(state.cell);
  });
}
setInterval(tick, 1000);
setInterval(loadAgents, 15000);
setInterval(loadChart, 60000);
setInterval(loadAttention, 30000);
loadAgents().then(connectLive);
loadChart();
loadAttention();
