// The cluster: every node sharing the database and who holds each session's lease, with the
// ages that tell a live node from a dead one. Asked for again every few seconds.
'use strict';

const nodesBody = document.getElementById('nodes-body');
const leasesBody = document.getElementById('leases-body');

// A duration in milliseconds as the page shows it: "12 s", "3 min 5 s", "—" for none.
function age(ms) {
  if (ms === null || ms === undefined) return '—';
  const negative = ms < 0;
  const seconds = Math.round(Math.abs(ms) / 1000);
  const text = seconds < 60 ? seconds + ' s' : Math.floor(seconds / 60) + ' min ' + (seconds % 60) + ' s';
  return negative ? '−' + text : text;
}

async function loadCluster() {
  const reply = await api('GET', '/api/cluster');
  const status = document.getElementById('cluster-status');
  if (!reply.ok) { status.textContent = errorMessage(reply); return; }
  status.textContent = '';
  const cluster = reply.body;
  document.getElementById('cluster-single').hidden = cluster.nodes.length > 0;
  nodesBody.textContent = '';
  for (const node of cluster.nodes) {
    nodesBody.append(el('tr', {'data-node': node.node},
      el('td', {class: 'mono'}, node.node),
      el('td', {}, el('span', {class: 'badge ' + (node.alive ? 'ok' : 'off')}, t(node.alive ? 'node_alive' : 'node_gone'))),
      el('td', {class: 'mono'}, new Date(node.started_unix_ms).toLocaleString()),
      el('td', {class: 'mono'}, age(node.heartbeat_age_ms)),
      el('td', {class: 'mono'}, String(node.leases_held))));
  }
  leasesBody.textContent = '';
  for (const lease of cluster.leases) {
    leasesBody.append(el('tr', {'data-session': lease.session},
      el('td', {class: 'mono'}, lease.session),
      el('td', {class: 'mono'}, lease.holder || t('lease_free')),
      el('td', {class: 'mono'}, String(lease.token)),
      el('td', {class: 'mono'}, age(lease.held_for_ms)),
      el('td', {class: 'mono'}, age(lease.renewed_age_ms)),
      el('td', {class: 'mono'}, age(lease.expires_in_ms))));
  }
}

loadCluster();
setInterval(loadCluster, 3000);
