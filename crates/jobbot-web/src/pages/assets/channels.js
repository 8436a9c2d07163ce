// The channel list: deleting a channel, with confirmation, at the revision the list shows.
'use strict';

const channelList = document.getElementById('channels');
channelList.addEventListener('click', async (event) => {
  const button = event.target.closest('button[data-delete]');
  if (!button) return;
  const id = button.dataset.delete;
  if (!confirm(t('confirm_delete', {name: button.dataset.name}))) return;
  const status = document.getElementById('list-status');
  const reply = await api('DELETE', '/api/channels/' + encodeURIComponent(id), undefined,
    {ifMatch: channelList.dataset.revision});
  if (reply.ok) {
    location.reload();
  } else if (reply.status === 409) {
    status.textContent = t('conflict');
  } else {
    status.textContent = errorMessage(reply);
  }
});
