// The vacancy history: processed messages, newest first, filtered by status and channel, a page
// at a time.
'use strict';

const filters = document.getElementById('vacancy-filters');
const vacanciesBody = document.getElementById('vacancies-body');
const moreButton = document.getElementById('more');
let nextBefore = null;

function contactsOf(contacts) {
  if (!contacts) return [];
  const out = [];
  for (const [kind, values] of Object.entries(contacts)) {
    if (Array.isArray(values)) values.forEach((item) => out.push(typeof item === 'string' ? item : JSON.stringify(item)));
    else if (values) out.push(kind + ': ' + values);
  }
  return out;
}

async function loadVacancies(append) {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData(filters)) if (value) params.set(name, value);
  params.set('limit', '50');
  if (append && nextBefore) params.set('before_id', String(nextBefore));
  const reply = await api('GET', '/api/vacancies?' + params);
  const status = document.getElementById('vacancies-status');
  if (!reply.ok) { status.textContent = errorMessage(reply); return; }
  status.textContent = '';
  if (!append) vacanciesBody.textContent = '';
  for (const vacancy of reply.body.vacancies) {
    const relevant = vacancy.status === 'relevant';
    vacanciesBody.append(el('tr', {class: relevant ? 'relevant' : 'not-relevant'},
      el('td', {class: 'mono'}, new Date(vacancy.posted_at).toLocaleString()),
      el('td', {}, vacancy.link ? el('a', {href: vacancy.link, target: '_blank', rel: 'noopener'}, vacancy.source_title || vacancy.link) : vacancy.source_title),
      el('td', {class: 'text'}, el('span', {class: 'badge ' + (relevant ? 'ok' : 'off')}, t(relevant ? 'status_relevant' : 'status_not_relevant')), ' ', vacancy.text),
      el('td', {}, (vacancy.matched || []).map((match) => el('span', {class: 'tag', title: (match.keywords || []).join(', ')}, match.channel_id))),
      el('td', {class: 'mono'}, contactsOf(vacancy.contacts).map((contact) => el('div', {}, contact)))));
  }
  nextBefore = reply.body.next_before_id || null;
  moreButton.hidden = !nextBefore;
  document.getElementById('no-vacancies').hidden = vacanciesBody.children.length > 0;
}

filters.addEventListener('change', () => loadVacancies(false));
moreButton.addEventListener('click', () => loadVacancies(true));
loadVacancies(false);
