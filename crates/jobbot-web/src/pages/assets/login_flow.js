// The Telegram login of one session (phone → code → 2FA password, or a QR code scanned by the
// account's phone → 2FA password) through /api/logins, built
// into any element: the logins page runs one per account card, the agents dashboard one inline
// in an agent's row. Codes and passwords go to the server and are never kept here.
'use strict';

const LOGIN_STEPS = {
  awaiting_phone: {label: 'login_phone', field: 'phone', type: 'tel'},
  awaiting_code: {label: 'login_code', field: 'code', type: 'text'},
  awaiting_password: {label: 'login_password', field: 'password', type: 'password'},
};

// The flow's elements for `session`; `onSignedIn` runs once the account is logged in. With
// `start`, the login begins at once (the dashboard's "log in" button).
function loginFlow(session, onSignedIn, start) {
  const base = '/api/logins/' + encodeURIComponent(session);
  const stateText = el('p', {class: 'login-state muted', text: t('login_idle')});
  const stepLabel = el('span', {class: 'step-label'});
  const input = el('input', {name: 'value', autocomplete: 'off'});
  const error = el('p', {class: 'error step-error', role: 'status'});
  // Where the code went (`sent.delivery`), and a button for the other way Telegram offers.
  const delivery = el('p', {class: 'code-delivery muted', hidden: true});
  const resendButton = el('button', {type: 'button', class: 'resend-code', hidden: true, onclick: resend}, '');
  const form = el('form', {class: 'login-step', novalidate: true, hidden: true},
    delivery,
    el('label', {}, stepLabel, ' ', input),
    el('button', {type: 'submit', class: 'primary'}, t('login_next')), ' ',
    resendButton, ' ',
    el('button', {type: 'button', class: 'cancel-login', onclick: cancel}, t('login_cancel')),
    error);
  const startButton = el('button', {type: 'button', class: 'start-login', onclick: begin}, t('login_start'));
  // QR login: the image of the current token (`qr.svg`), reloaded whenever Telegram rotates it.
  const qrButton = el('button', {type: 'button', class: 'start-qr-login', hidden: true, onclick: startQr}, t('login_qr'));
  const qrImage = el('img', {class: 'login-qr', alt: t('login_qr_alt'), width: '240', height: '240'});
  const qrBox = el('div', {class: 'login-qr-box', hidden: true},
    el('p', {class: 'muted', text: t('login_qr_scan')}), qrImage,
    el('button', {type: 'button', class: 'cancel-login', onclick: cancel}, t('login_cancel')));
  const root = el('div', {class: 'login-flow', 'data-session': session},
    stateText, form, qrBox, el('div', {class: 'actions'}, startButton, ' ', qrButton));
  // The QR code shown, and whether a wait for its scan is running.
  let qrUrl = null;
  let following = false;

  function show(login) {
    const step = login && LOGIN_STEPS[login.state];
    error.textContent = '';
    const qr = Boolean(login && login.state === 'awaiting_qr_scan');
    // While a step waits for its value, "start" would only begin again.
    startButton.hidden = Boolean(step) || qr;
    // A QR code can replace the phone or the code step.
    qrButton.hidden = !(login && (login.state === 'awaiting_phone' || login.state === 'awaiting_code'));
    qrBox.hidden = !qr;
    if (!login) {
      stateText.textContent = t('login_idle');
      form.hidden = true;
      qrUrl = null;
      return;
    }
    if (qr) {
      form.hidden = true;
      stateText.textContent = '';
      if (login.url !== qrUrl) {
        qrUrl = login.url;
        qrImage.src = base + '/qr.svg?v=' + encodeURIComponent(login.url.slice(-12));
      }
      followQr();
      return;
    }
    qrUrl = null;
    if (login.state === 'signed_in') {
      stateText.textContent = t('login_signed_in');
      form.hidden = true;
      if (onSignedIn) onSignedIn(login);
      return;
    }
    stateText.textContent = login.hint ? t('login_hint') + ': ' + login.hint : (login.phone || login.last_phone || '');
    form.hidden = !step;
    const sent = login.state === 'awaiting_code' ? login.sent : null;
    delivery.hidden = !sent;
    resendButton.hidden = !(sent && sent.next);
    if (sent) {
      delivery.textContent = t('code_sent_' + sent.delivery);
      if (sent.next) resendButton.textContent = t('code_resend_' + sent.next);
    }
    if (step) {
      stepLabel.textContent = t(step.label);
      input.type = step.type;
      input.value = login.state === 'awaiting_phone' && login.last_phone ? login.last_phone : '';
      form.dataset.field = step.field;
      input.focus();
    }
  }

  function refused(reply) {
    form.hidden = false;
    const problem = reply.body && reply.body.problems && reply.body.problems[0];
    error.textContent = problem ? problem.message : ((reply.body && reply.body.message) || errorMessage(reply));
  }

  async function begin() {
    const reply = await api('POST', '/api/logins', {session});
    if (reply.ok) show(reply.body.login);
    else refused(reply);
  }

  async function startQr() {
    const reply = await api('POST', base + '/qr');
    if (reply.ok) show(reply.body.login);
    else refused(reply);
  }

  // Waits for the scan (the server answers after a few seconds at most, or when the token
  // expires), shows what came, and waits again while a QR code is shown. One wait at a time:
  // `show` starts this loop only when none runs.
  async function followQr() {
    if (following) return;
    following = true;
    try {
      while (qrUrl !== null) {
        const reply = await api('POST', base + '/qr/wait');
        if (!reply.ok) {
          qrUrl = null;
          if (reply.status === 404) show(null);
          else refused(reply);
          return;
        }
        show(reply.body.login);
      }
    } finally {
      following = false;
    }
  }

  async function resend() {
    const reply = await api('POST', base + '/resend');
    if (reply.ok) show(reply.body.login);
    else refused(reply);
  }

  async function cancel() {
    await api('DELETE', base);
    show(null);
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const field = form.dataset.field;
    // The last refusal is about the value sent before, not this one.
    error.textContent = '';
    if (!input.value.trim()) { error.textContent = t('err_required'); return; }
    const reply = await api('POST', base + '/' + field, {[field]: input.value.trim()});
    if (reply.ok) show(reply.body.login);
    else refused(reply);
  });

  if (start) begin();
  return root;
}
