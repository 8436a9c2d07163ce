// The admin login page: the password opens a cookie session, then back to where the browser was.
'use strict';

document.getElementById('login').addEventListener('submit', async (event) => {
  event.preventDefault();
  const status = document.getElementById('status');
  const password = document.getElementById('password').value;
  if (!password) { status.textContent = t('err_required'); return; }
  const reply = await api('POST', '/api/login', {password});
  if (!reply.ok) { status.textContent = (reply.body && reply.body.message) || errorMessage(reply); return; }
  const next = new URLSearchParams(location.search).get('next') || '/';
  // Only a path on this site: never an open redirect.
  location.href = next.startsWith('/') && !next.startsWith('//') ? next : '/';
});
