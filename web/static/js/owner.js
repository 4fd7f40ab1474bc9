// The owner's tools on the room page: issue an invitation (expiry, single
// use), copy or share its link, list and revoke the outstanding ones, and
// lock or unlock the room. Shown only to the owner, and to whoever becomes
// the owner later.

import { h, replace } from './dom.js';
import { explain } from './errors.js';
import { copyText, formatDate, fromNow } from './ui.js';

/** Expiry choices, in seconds. */
const EXPIRIES = [
  { ttl: 3600, label: '1 hour' },
  { ttl: 86_400, label: '24 hours' },
  { ttl: 7 * 86_400, label: '7 days' },
];

/**
 * Tokens of the invitations issued from this page, by invitation id: the
 * server keeps only their hashes, so a link can be copied again only from
 * the tab that issued it.
 * @type {Map<string, string>}
 */
const tokens = new Map();

/**
 * The link that lets a guest in: the token travels in the fragment only.
 * @param {string} roomId
 * @param {string} token
 * @returns {string}
 */
export function invitationLink(roomId, token) {
  return `${location.origin}/r/${encodeURIComponent(roomId)}#invite=${encodeURIComponent(token)}`;
}

/**
 * Fills the owner tools panel (a <details>) and keeps it in step with the
 * ownership and the lock.
 * @param {HTMLDetailsElement} panel
 * @param {import('./room.js').RoomSession} room
 */
export function mountOwnerTools(panel, room) {
  const signal = room.lifetime;
  let built = false;

  function update() {
    panel.hidden = !room.isOwner;
    if (room.isOwner && !built) {
      built = true;
      build();
    }
  }
  room.on('owner', update, { signal });
  update();

  function build() {
    // Open at first when nobody else is in the room yet: inviting is the
    // next thing to do.
    panel.open = room.members.size <= 1;

    const ttl = h(
      'select',
      { id: 'invite-ttl', name: 'ttl' },
      EXPIRIES.map((e) => h('option', { value: String(e.ttl), selected: e.ttl === 86_400 }, e.label)),
    );
    const single = h('input', { type: 'checkbox', id: 'invite-single', name: 'single' });
    const create = h('button', { type: 'submit', class: 'primary', id: 'invite-create' }, 'Create an invitation link');
    const formError = h('p', { class: 'field-error', role: 'alert', id: 'invite-error' });
    const form = h(
      'form',
      { class: 'stack', id: 'invite-form' },
      h('div', { class: 'field' }, h('label', { for: 'invite-ttl' }, 'The link works for'), ttl),
      h('label', { class: 'check' }, single, h('span', null, 'For one person only (single use)')),
      formError,
      h('div', { class: 'actions' }, create),
    );

    const link = h('input', { type: 'text', id: 'invite-link', readonly: true, 'aria-describedby': 'invite-link-hint' });
    const copyStatus = h('p', { class: 'muted small', role: 'status', id: 'invite-copy-status' });
    const copy = h('button', { type: 'button', class: 'primary', id: 'invite-copy' }, 'Copy link');
    const share =
      typeof navigator.share === 'function' ? h('button', { type: 'button', class: 'secondary', id: 'invite-share' }, 'Share…') : null;
    const result = h(
      'div',
      { class: 'invite-result', id: 'invite-result', hidden: true },
      h('label', { for: 'invite-link' }, 'New invitation link'),
      link,
      h('p', { class: 'muted small', id: 'invite-link-hint' }, 'Send it to the person you invite, by any means. Anyone holding it can enter until it expires.'),
      h('div', { class: 'actions' }, copy, share),
      copyStatus,
    );

    const invitesState = h('p', { class: 'muted small', id: 'invites-state', role: 'status' });
    const invites = h('ul', { class: 'invite-list', id: 'invite-list' });

    const lockText = h('p', { class: 'small', id: 'lock-state' });
    const lockButton = h('button', { type: 'button', class: 'secondary', id: 'lock-button' });
    const lockError = h('p', { class: 'field-error', role: 'alert' });

    replace(
      panel,
      h('summary', null, h('span', { class: 'summary-title' }, 'Invite people, lock the room')),
      h(
        'div',
        { class: 'panel-body' },
        h('h3', null, 'New invitation'),
        form,
        result,
        h('h3', null, 'Lock'),
        lockText,
        lockButton,
        lockError,
        h('h3', null, 'Outstanding invitations'),
        invitesState,
        invites,
      ),
    );

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      create.disabled = true;
      formError.textContent = '';
      try {
        const reply = await room.conn.request('invite', { ttl: Number(ttl.value), singleUse: single.checked });
        if (signal.aborted) return;
        const token = reply.invite.token ?? '';
        tokens.set(reply.invite.id, token);
        link.value = invitationLink(room.roomId, token);
        result.hidden = false;
        copyStatus.textContent = '';
        copy.focus();
        loadInvites();
      } catch (err) {
        formError.textContent = explain(err).text;
      } finally {
        create.disabled = false;
      }
    });

    copy.addEventListener('click', async () => {
      const r = await copyText(link.value, link);
      copyStatus.textContent = r.message;
    });
    share?.addEventListener('click', () => {
      navigator.share({ title: room.roomName, text: `Join “${room.roomName}” on lepeerchat`, url: link.value }).catch(() => {});
    });

    async function loadInvites() {
      invitesState.textContent = 'Loading…';
      try {
        const reply = await room.conn.request('invites', {}, { retry: true });
        if (signal.aborted) return;
        showInvites(reply.invites);
      } catch (err) {
        invitesState.textContent = `The invitations could not be listed: ${explain(err).text}`;
      }
    }

    /** @param {import('./protocol.js').InviteView[]} list */
    function showInvites(list) {
      invites.replaceChildren();
      invitesState.textContent = list.length === 0 ? 'None: nobody new can enter until you create one.' : '';
      const now = Date.now();
      for (const inv of [...list].sort((a, b) => Date.parse(a.expires) - Date.parse(b.expires))) {
        const expires = new Date(inv.expires);
        const token = tokens.get(inv.id);
        const when = `Expires ${fromNow(expires, now)}`;
        const meta = `${formatDate(expires)}${inv.singleUse ? ' · single use' : ''}`;
        const status = h('span', { class: 'muted small', role: 'status' });
        const copyAgain = token
          ? h(
              'button',
              {
                type: 'button',
                class: 'secondary small',
                'aria-label': `Copy the link of the invitation that expires ${fromNow(expires, now)}`,
                onclick: async () => {
                  const r = await copyText(invitationLink(room.roomId, token));
                  status.textContent = r.copied ? 'Copied.' : 'Copying was refused by the browser.';
                },
              },
              'Copy link',
            )
          : null;
        const revoke = h(
          'button',
          {
            type: 'button',
            class: 'secondary small',
            'aria-label': `Revoke the invitation that expires ${fromNow(expires, now)}`,
            onclick: async () => {
              revoke.disabled = true;
              try {
                await room.conn.request('revoke', { invite: inv.id });
                tokens.delete(inv.id);
                if (link.value.endsWith(`#invite=${encodeURIComponent(token ?? '')}`)) result.hidden = true;
                loadInvites();
                invitesState.textContent = 'Invitation revoked.';
              } catch (err) {
                revoke.disabled = false;
                status.textContent = explain(err).text;
              }
            },
          },
          'Revoke',
        );
        invites.append(
          h(
            'li',
            { 'data-invite-id': inv.id },
            h('span', { class: 'invite-desc' }, h('span', { class: 'invite-when' }, when), h('span', { class: 'invite-meta muted' }, meta)),
            h('span', { class: 'invite-actions' }, copyAgain, revoke),
            status,
          ),
        );
      }
    }

    function showLock() {
      lockText.textContent = room.locked
        ? 'Locked: nobody new can enter, even with an invitation. Members can still come back.'
        : 'Open: anyone with a valid invitation can enter.';
      lockButton.textContent = room.locked ? 'Unlock the room' : 'Lock the room';
    }
    lockButton.addEventListener('click', async () => {
      lockButton.disabled = true;
      lockError.textContent = '';
      const locked = !room.locked;
      try {
        await room.conn.request('lock', { locked });
        room.locked = locked;
        room.view.render();
        room.emit('locked', { locked });
      } catch (err) {
        lockError.textContent = explain(err).text;
      } finally {
        lockButton.disabled = false;
      }
    });
    room.on('locked', showLock, { signal });
    showLock();
    loadInvites();
    room.on('rejoined', () => room.isOwner && loadInvites(), { signal });
  }
}
