// The admin login page: the password opens a cookie session, then back to where the browser was.
'use strict';

// `next` when it can only mean a page of this site, else '/'. Browsers drop tabs and line
// breaks anywhere in a URL and read '\' as '/', so '/\t/evil.example' or '/\evil.example' would
// leave the site: only visible ASCII without a backslash, starting with one '/', is taken (the
// same rule as the server's language switch), and the result must resolve to this origin.
function safeNext(next) {
  if (!next || !/^\/(?![/\\])[\x21-\x7e]*$/.test(next) || next.includes('\\')) return '/';
  const url = new URL(next, location.origin);
  return url.origin === location.origin ? url.pathname + url.search + url.hash : '/';
}

document.getElementById('login').addEventListener('submit', async (event) => {
  event.preventDefault();
  const status = document.getElementById('status');
  const password = document.getElementById('password').value;
  if (!password) { status.textContent = t('err_required'); return; }
  const reply = await api('POST', '/api/login', {password});
  if (!reply.ok) { status.textContent = (reply.body && reply.body.message) || errorMessage(reply); return; }
  location.href = safeNext(new URLSearchParams(location.search).get('next'));
});
