// The channel form: every field of the channel, the CRM agent list of the seed (addAgent,
// removeAgent, collectAgents), validation here and again on the server with each message next
// to its field, and saving at the revision the form was rendered from (a stale save shows the
// conflict instead of overwriting).
'use strict';

const form = document.getElementById('channel-form');
const agentsList = document.getElementById('agents-list');
const formStatus = document.getElementById('form-status');

// Adds an empty agent row (phone + session name) and focuses its phone.
function addAgent() {
  const template = document.getElementById('agent-row-template');
  const row = template.content.firstElementChild.cloneNode(true);
  agentsList.append(row);
  row.querySelector('input[name="phone"]').focus();
  clearError('agents');
  return row;
}

// Removes the row of the ✕ button that was clicked.
function removeAgent(button) {
  const row = button.closest('.agent-row');
  if (row) row.remove();
}

// The seed's buttons, wired here: the Content-Security-Policy allows no inline handler.
document.getElementById('add-agent').addEventListener('click', () => addAgent());
agentsList.addEventListener('click', (event) => {
  const button = event.target.closest('.remove-agent');
  if (button) removeAgent(button);
});

const PHONE = /^\+[1-9][0-9]{7,14}$/;
const SESSION = /^[A-Za-z0-9_-]{1,64}$/;

// The agent list as the API takes it, and a problem for every row field that is missing or
// malformed: a half-filled row is never dropped silently.
function collectAgents() {
  const agents = [];
  const problems = [];
  const seen = new Set();
  agentsList.querySelectorAll('.agent-row').forEach((row, index) => {
    const phone = row.querySelector('input[name="phone"]').value.trim();
    const session = row.querySelector('input[name="session_name"]').value.trim();
    const proxy = row.querySelector('input[name="proxy"]').value.trim();
    const compactPhone = phone.replace(/[\s().-]/g, '');
    if (!phone) problems.push({path: `agents[${index}].phone`, message: t('err_required')});
    else if (!PHONE.test(compactPhone)) problems.push({path: `agents[${index}].phone`, message: t('err_phone')});
    if (!session) problems.push({path: `agents[${index}].session_name`, message: t('err_required')});
    else if (!SESSION.test(session)) problems.push({path: `agents[${index}].session_name`, message: t('err_session')});
    else if (seen.has(session)) problems.push({path: `agents[${index}].session_name`, message: t('err_duplicate_session')});
    seen.add(session);
    const agent = {phone, session_name: session};
    if (proxy) agent.proxy = proxy;
    if (row.dataset.pacing) agent.pacing = JSON.parse(row.dataset.pacing);
    agents.push(agent);
  });
  return {agents, problems};
}

function value(name) {
  return form.elements[name].value.trim();
}

function checked(name) {
  return form.elements[name].checked;
}

function words(text) {
  return text.split(',').map((word) => word.trim()).filter((word) => word);
}

// The request body and every problem the browser can see by itself.
function collectChannel() {
  const problems = [];
  const integer = (name, required) => {
    const text = value(name);
    if (!text) {
      if (required) problems.push({path: name, message: t('err_required')});
      return 0;
    }
    if (!/^-?[0-9]+$/.test(text)) {
      problems.push({path: name, message: t('err_number')});
      return 0;
    }
    return Number(text);
  };
  // `path`: where the problem is shown, when the input is one of a pair.
  const count = (name, path) => {
    const text = value(name);
    if (!/^[0-9]+$/.test(text)) {
      problems.push({path: path || name, message: t('err_number')});
      return 0;
    }
    return Number(text);
  };
  // A number with an optional fraction (`0.7`, `1`).
  const decimal = (name) => {
    const text = value(name);
    if (!/^[0-9]+([.,][0-9]+)?$/.test(text)) {
      problems.push({path: name, message: t('err_number')});
      return 0;
    }
    return Number(text.replace(',', '.'));
  };
  const body = {
    name: value('name'),
    telegram_id: integer('telegram_id', true),
    enabled: checked('enabled'),
    input_sources: value('input_sources').split('\n').map((line) => line.trim()).filter((line) => line),
    include_keywords: words(value('include_keywords')),
    exclude_keywords: words(value('exclude_keywords')),
    require_all_includes: checked('require_all_includes'),
    crm_enabled: checked('crm_enabled'),
    crm_group_id: integer('crm_group_id', checked('crm_enabled')),
    crm_invite_link: value('crm_invite_link'),
    auto_response_enabled: checked('auto_response_enabled'),
    auto_response_template: form.elements['auto_response_template'].value,
    ai_conversation_enabled: checked('ai_conversation_enabled'),
    ai_mode: form.elements['ai_mode'].value,
    ai_model: value('ai_model'),
    ai_prompts: Object.fromEntries(PROMPTS.map((key) => [key, form.elements['ai_prompts.' + key].value])),
    ai_fallback: fallbackChain(value('ai_fallback')),
    ai_reply_delay_seconds: [count('ai_reply_delay_seconds.min', 'ai_reply_delay_seconds'),
      count('ai_reply_delay_seconds.max', 'ai_reply_delay_seconds')],
    ai_max_replies_per_day: count('ai_max_replies_per_day'),
    ai_temperature: decimal('ai_temperature'),
    ai_max_tokens: count('ai_max_tokens'),
    ai_context_window_messages: count('ai_context_window_messages'),
    instant_response: checked('instant_response'),
    human_delay: {
      min_seconds: count('human_delay.min_seconds'),
      max_seconds: count('human_delay.max_seconds'),
    },
    agent_pacing: {
      messages_per_minute: count('agent_pacing.messages_per_minute'),
      burst: count('agent_pacing.burst'),
      cold_dms_per_day: count('agent_pacing.cold_dms_per_day'),
      peer_flood_pause_hours: count('agent_pacing.peer_flood_pause_hours'),
    },
  };
  // The provider stays as it is when the field is emptied (the configuration needs one).
  if (value('ai_provider')) body.ai_provider = value('ai_provider');
  if (!body.name) problems.push({path: 'name', message: t('err_required')});
  const collected = collectAgents();
  body.agents = collected.agents;
  problems.push(...collected.problems);
  if (body.crm_enabled && body.agents.length === 0) {
    problems.push({path: 'agents', message: t('err_crm_agents')});
  }
  if (form.dataset.mode === 'new' && value('id')) body.id = value('id');
  return {body, problems};
}

// The six texts of a channel's `prompts`, as the form names them (`ai_prompts.<key>`).
const PROMPTS = ['base_context', 'discovery', 'engagement', 'call_ready', 'call_pending', 'call_declined'];
// Problems the configuration reports under `ai_config` belong to the form's AI fields.
const AI_PATHS = {
  'ai_config.mode': 'ai_mode',
  'ai_config.llm_provider': 'ai_provider',
  'ai_config.llm_model': 'ai_model',
  'ai_config.fallback': 'ai_fallback',
  'ai_config.reply_delay_seconds': 'ai_reply_delay_seconds',
  'ai_config.max_replies_per_day': 'ai_max_replies_per_day',
  'ai_config.temperature': 'ai_temperature',
  'ai_config.max_tokens': 'ai_max_tokens',
  'ai_config.context_window_messages': 'ai_context_window_messages',
};

// The fallback chain as the API takes it: one provider a line, its model after a space.
function fallbackChain(text) {
  return text.split('\n').map((line) => line.trim()).filter((line) => line).map((line) => {
    const [provider, ...model] = line.split(/\s+/);
    return model.length ? {provider, model: model.join(' ')} : {provider};
  });
}

// The paragraph a problem's message goes to: `agents[1].phone` is the second row's phone,
// `filters.include_keywords[0]` and `input_sources[2]` the field itself.
function errorSlot(path) {
  const row = /^agents\[(\d+)\](?:\.(\w+))?/.exec(path);
  if (row) {
    const rows = agentsList.querySelectorAll('.agent-row');
    const target = rows[Number(row[1])];
    if (target) {
      const field = ['phone', 'session_name', 'proxy'].includes(row[2]) ? row[2] : 'session_name';
      return target.querySelector(`[data-error-for="${field}"]`);
    }
    return form.querySelector('[data-error-for="agents"]');
  }
  const aiField = Object.keys(AI_PATHS).find((prefix) => path === prefix || path.startsWith(prefix + '['));
  const alias = aiField ? AI_PATHS[aiField] : path.replace(/^prompts\./, 'ai_prompts.');
  const plain = alias.replace(/^filters\./, '');
  const base = plain.replace(/\[\d+\].*$/, '');
  return form.querySelector(`[data-error-for="${CSS.escape(plain)}"]`)
    || form.querySelector(`[data-error-for="${CSS.escape(base)}"]`);
}

function clearError(path) {
  const slot = form.querySelector(`[data-error-for="${path}"]`);
  if (slot) slot.textContent = '';
}

function clearErrors() {
  form.querySelectorAll('.error').forEach((slot) => { slot.textContent = ''; });
  form.querySelectorAll('.invalid').forEach((field) => field.classList.remove('invalid'));
  formStatus.textContent = '';
}

function showProblems(problems) {
  const unplaced = [];
  for (const problem of problems) {
    const slot = errorSlot(problem.path);
    if (slot) {
      slot.textContent = slot.textContent ? slot.textContent + '; ' + problem.message : problem.message;
      slot.closest('.field').classList.add('invalid');
    } else {
      unplaced.push(problem.path + ': ' + problem.message);
    }
  }
  formStatus.textContent = [t('errors_below'), ...unplaced].join(' ');
  const first = form.querySelector('.invalid input, .invalid textarea, .invalid');
  if (first && first.focus) first.focus();
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearErrors();
  const {body, problems} = collectChannel();
  if (problems.length) {
    showProblems(problems);
    return;
  }
  body.revision = form.dataset.revision;
  const editing = form.dataset.mode === 'edit';
  const path = editing ? '/api/channels/' + encodeURIComponent(value('id')) : '/api/channels';
  const saveButton = document.getElementById('save');
  saveButton.disabled = true;
  const reply = await api(editing ? 'PUT' : 'POST', path, body);
  saveButton.disabled = false;
  if (reply.ok) {
    if (!editing) {
      location.href = '/channels/' + encodeURIComponent(reply.body.channel.id);
      return;
    }
    form.dataset.revision = reply.body.revision;
    formStatus.textContent = t('saved');
    formStatus.classList.add('success');
    return;
  }
  formStatus.classList.remove('success');
  if (reply.status === 409 && reply.body && reply.body.error === 'conflict') {
    // Someone saved since this form was rendered: show it, keep the typed values, overwrite nothing.
    document.getElementById('conflict').hidden = false;
    formStatus.textContent = t('conflict');
  } else if (reply.body && reply.body.problems) {
    // 422: a value is malformed; 409 `rejected`: a rule across fields or channels.
    showProblems(reply.body.problems);
  } else {
    formStatus.textContent = errorMessage(reply);
  }
});

// Typing in a field clears its message.
form.addEventListener('input', (event) => {
  const field = event.target.closest('.field');
  if (field) {
    field.classList.remove('invalid');
    field.querySelectorAll(':scope > .error').forEach((slot) => { slot.textContent = ''; });
  }
});

// The model field shows the chosen provider's default model while it is empty; a model typed
// as the previous provider's default is cleared when the provider changes (it would not exist
// at the new one).
function defaultModelOf(provider) {
  const option = Array.from(document.querySelectorAll('#ai-providers option'))
    .find((candidate) => candidate.value === provider.trim());
  return option ? option.dataset.model : '';
}
let shownProvider = form.elements['ai_provider'].value;
function showDefaultModel() {
  const model = form.elements['ai_model'];
  const provider = form.elements['ai_provider'].value;
  if (model.value && model.value === defaultModelOf(shownProvider)) model.value = '';
  shownProvider = provider;
  model.placeholder = defaultModelOf(provider);
}
form.elements['ai_provider'].addEventListener('input', showDefaultModel);
showDefaultModel();

// The one-click setup (shown for a saved channel without a CRM group): the main account creates
// the output channel and the CRM group, the agents come in, and the channel is saved with the
// new ids and invite link; a failure names the step and what was deleted again.
const setupForm = document.getElementById('setup-form');
if (setupForm) {
  const setupStatus = document.getElementById('setup-status');
  const keepBox = setupForm.elements['keep_output_channel'];
  keepBox.addEventListener('change', () => {
    setupForm.elements['channel_title'].disabled = keepBox.checked;
  });
  setupForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    // Keeping the output channel set above: only the CRM group is created.
    const keep = setupForm.elements['keep_output_channel'].checked;
    const titles = {group_title: setupForm.elements['group_title'].value.trim()};
    if (!keep) titles.channel_title = setupForm.elements['channel_title'].value.trim();
    setupForm.querySelectorAll('[data-error-for]').forEach((slot) => { slot.textContent = ''; });
    const missing = Object.keys(titles).filter((name) => !titles[name]);
    for (const name of missing) {
      setupForm.querySelector(`[data-error-for="${name}"]`).textContent = t('err_required');
    }
    if (missing.length) return;
    const button = document.getElementById('setup-button');
    button.disabled = true;
    setupStatus.classList.remove('success');
    setupStatus.textContent = t('setup_running');
    const path = '/api/channels/' + encodeURIComponent(value('id')) + '/setup';
    const reply = await api('POST', path, {
      ...titles, keep_output_channel: keep, revision: form.dataset.revision,
    });
    button.disabled = false;
    if (reply.ok) {
      // The saved channel carries the new ids: show them in the form, at the new revision.
      form.elements['telegram_id'].value = reply.body.telegram_id;
      form.elements['crm_group_id'].value = reply.body.crm_group_id;
      form.elements['crm_invite_link'].value = reply.body.crm_invite_link;
      form.dataset.revision = reply.body.revision;
      setupStatus.textContent = reply.body.message;
      setupStatus.classList.add('success');
      button.hidden = true;
      return;
    }
    if (reply.status === 409 && reply.body && reply.body.error === 'conflict') {
      document.getElementById('conflict').hidden = false;
    }
    const problems = (reply.body && reply.body.problems) || [];
    setupStatus.textContent = problems.length
      ? problems.map((problem) => problem.path + ': ' + problem.message).join('; ')
      : errorMessage(reply);
  });
}
