// Telegram logins of the main account and each agent: phone → code → 2FA password, one step at
// a time through /api/logins. Codes and passwords go to the server and are never kept here.
'use strict';

const STEPS = {
  awaiting_phone: {label: 'login_phone', field: 'phone', type: 'tel'},
  awaiting_code: {label: 'login_code', field: 'code', type: 'text'},
  awaiting_password: {label: 'login_password', field: 'password', type: 'password'},
};

function showLogin(card, login) {
  const stateText = card.querySelector('.login-state');
  const form = card.querySelector('.login-step');
  const step = login && STEPS[login.state];
  form.querySelector('.step-error').textContent = '';
  if (!login) {
    stateText.textContent = t('login_idle');
    form.hidden = true;
    return;
  }
  if (login.state === 'signed_in') {
    stateText.textContent = t('login_signed_in');
    form.hidden = true;
    return;
  }
  stateText.textContent = login.hint ? t('login_hint') + ': ' + login.hint : (login.phone || login.last_phone || '');
  form.hidden = !step;
  if (step) {
    form.querySelector('.step-label').textContent = t(step.label);
    const input = form.querySelector('input[name="value"]');
    input.type = step.type;
    input.value = login.state === 'awaiting_phone' && login.last_phone ? login.last_phone : '';
    form.dataset.field = step.field;
    input.focus();
  }
}

document.querySelectorAll('.login').forEach((card) => {
  const session = card.dataset.session;
  const base = '/api/logins/' + encodeURIComponent(session);
  const form = card.querySelector('.login-step');
  const error = form.querySelector('.step-error');
  card.querySelector('.start-login').addEventListener('click', async () => {
    const reply = await api('POST', '/api/logins', {session});
    if (reply.ok) showLogin(card, reply.body.login);
    else { form.hidden = false; error.textContent = (reply.body && reply.body.message) || errorMessage(reply); }
  });
  card.querySelector('.cancel-login').addEventListener('click', async () => {
    await api('DELETE', base);
    showLogin(card, null);
  });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const field = form.dataset.field;
    const input = form.querySelector('input[name="value"]');
    if (!input.value.trim()) { error.textContent = t('err_required'); return; }
    const reply = await api('POST', base + '/' + field, {[field]: input.value.trim()});
    if (reply.ok) showLogin(card, reply.body.login);
    else {
      const problem = reply.body && reply.body.problems && reply.body.problems[0];
      error.textContent = problem ? problem.message : errorMessage(reply);
    }
  });
});
