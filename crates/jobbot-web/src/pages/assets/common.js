// Shared by every page: labels, the API call with the session's CSRF token, small DOM helpers.
'use strict';

const LABELS = JSON.parse(document.getElementById('labels').textContent);

// The label `key` of the page's language, with `{name}` placeholders filled from `values`.
function t(key, values) {
  let text = LABELS[key] || key;
  for (const [name, value] of Object.entries(values || {})) {
    text = text.split('{' + name + '}').join(String(value));
  }
  return text;
}

const CSRF = (document.querySelector('meta[name="csrf-token"]') || {}).content || '';

// Calls the JSON API with the cookie session. Resolves to {status, ok, body, etag}; a request
// that never reached the server resolves to status 0 so callers show one kind of failure.
async function api(method, path, body, options) {
  // The API words its refusals in the page's language.
  const headers = {'Accept': 'application/json', 'Accept-Language': document.documentElement.lang || 'ru'};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && CSRF) headers['X-CSRF-Token'] = CSRF;
  if (options && options.ifMatch) headers['If-Match'] = '"' + options.ifMatch + '"';
  let response;
  try {
    response = await fetch(path, {method, headers, credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body)});
  } catch (error) {
    return {status: 0, ok: false, body: {message: String(error)}, etag: null};
  }
  if (response.status === 401 && path !== '/api/login') {
    location.href = '/login?next=' + encodeURIComponent(location.pathname + location.search);
  }
  let parsed = null;
  const text = await response.text();
  try { parsed = text ? JSON.parse(text) : null; } catch (_) { parsed = {message: text}; }
  const etag = (response.headers.get('ETag') || '').replace(/^W\//, '').replace(/"/g, '') || null;
  return {status: response.status, ok: response.ok, body: parsed, etag};
}

// An element with attributes and children (strings become text nodes: never HTML).
function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else if (name === 'text') node.textContent = value;
    else node.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function errorMessage(reply) {
  const body = reply.body || {};
  return t('error_generic') + ' ' + reply.status + ': ' + (body.message || '');
}

const logoutButton = document.getElementById('logout');
if (logoutButton) {
  logoutButton.addEventListener('click', async () => {
    await api('POST', '/api/logout');
    location.href = '/login';
  });
}
