// Telegram logins of the main account and each agent, one flow per card (login_flow.js).
'use strict';

document.querySelectorAll('.login').forEach((card) => {
  card.append(loginFlow(card.dataset.session));
});
