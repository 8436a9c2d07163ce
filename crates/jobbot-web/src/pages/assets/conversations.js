// The AI conversations: the latest ones, newest first, filtered by channel; one conversation's
// phase, who answers, the history the model sees, and the operator's actions (send the pending
// suggestion, give a handed-over conversation back to the AI).
'use strict';

const conversationFilters = document.getElementById('conversation-filters');
const conversationsBody = document.getElementById('conversations-body');
const panel = document.getElementById('conversation');

function contactLabel(contact) {
  if (!contact) return '—';
  return contact.username ? contact.name + ' (@' + contact.username + ')' : contact.name;
}

async function loadConversations() {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData(conversationFilters)) if (value) params.set(name, value);
  params.set('limit', '100');
  const reply = await api('GET', '/api/conversations?' + params);
  const status = document.getElementById('conversations-status');
  if (!reply.ok) { status.textContent = errorMessage(reply); return; }
  status.textContent = '';
  conversationsBody.textContent = '';
  for (const item of reply.body.conversations) {
    const href = '/conversations/' + item.conversation;
    conversationsBody.append(el('tr', {'data-conversation': item.conversation},
      el('td', {class: 'mono'}, new Date(item.updated_at_unix_ms).toLocaleString()),
      el('td', {}, el('a', {href}, contactLabel(item.contact))),
      el('td', {}, el('span', {class: 'tag'}, item.channel_id)),
      el('td', {}, t('phase_' + item.phase)),
      el('td', {}, el('span', {class: 'badge ' + (item.control === 'active' ? 'ok' : 'off')}, t('control_' + item.control)),
        item.suggestion_pending ? el('span', {class: 'badge warn'}, t('pending_suggestion')) : null),
      el('td', {class: 'mono'}, String(item.total_messages))));
  }
  document.getElementById('no-conversations').hidden = conversationsBody.children.length > 0;
}

async function loadConversation() {
  const id = panel.dataset.id;
  if (!id) return;
  panel.hidden = false;
  const reply = await api('GET', '/api/conversations/' + encodeURIComponent(id) + '/ai');
  const status = document.getElementById('conversation-status');
  if (!reply.ok) { status.textContent = errorMessage(reply); return; }
  const ai = reply.body;
  document.getElementById('conversation-title').textContent = contactLabel(ai.contact);
  document.getElementById('conversation-meta').textContent = [
    ai.channel_id,
    ai.contact ? t('col_agent') + ': ' + ai.contact.agent : null,
    t('col_phase') + ': ' + t('phase_' + ai.phase),
    t('control_' + ai.control),
    t('ai_counts', {suggestions: ai.suggestions, replies: ai.replies_sent}),
  ].filter((part) => part).join(' · ');
  const suggestion = document.getElementById('suggestion');
  suggestion.hidden = !ai.suggestion;
  document.getElementById('suggestion-text').textContent = ai.suggestion ? ai.suggestion.text : '';
  document.getElementById('release-ai').hidden = ai.control === 'active';
  const history = document.getElementById('history');
  history.textContent = '';
  for (const entry of ai.history) {
    history.append(el('li', {class: 'author-' + entry.author},
      el('span', {class: 'muted mono'}, new Date(entry.at_unix_ms).toLocaleString() + ' · ' + t('author_' + entry.author)),
      el('p', {class: 'text'}, entry.text)));
  }
}

async function act(path, done) {
  const status = document.getElementById('conversation-status');
  const reply = await api('POST', '/api/conversations/' + encodeURIComponent(panel.dataset.id) + path);
  status.classList.toggle('success', reply.ok);
  status.textContent = reply.ok ? t(done) : errorMessage(reply);
  await loadConversation();
  await loadConversations();
}

document.getElementById('send-suggestion').addEventListener('click', () => act('/ai/send', 'suggestion_sent'));
document.getElementById('release-ai').addEventListener('click', () => act('/ai/release', 'ai_released'));
conversationFilters.addEventListener('change', loadConversations);
loadConversations();
loadConversation();
