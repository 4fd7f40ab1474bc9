// Home page: create a room; the rooms this browser is a member of, checked
// with the server (name, my name, who is online), one click to go back in;
// forget one or all.

import { h, replace } from './dom.js';
import { explain } from './errors.js';
import {
  credentialsOf,
  forgetAllIdentities,
  forgetIdentity,
  lastName,
  listIdentities,
  persistent,
  saveIdentity,
  touchIdentity,
} from './identity.js';
import { confirmDialog, nameProblem, people } from './ui.js';

/** The server answers status for at most this many rooms at once. */
const STATUS_BATCH = 100;

/**
 * @param {import('./app.js').PageContext} ctx
 * @returns {import('./app.js').Cleanup}
 */
export function renderHome(ctx) {
  const { conn, main, navigate } = ctx;
  const life = new AbortController();
  document.title = 'lepeerchat';

  // --- create a room ---
  const roomInput = h('input', {
    id: 'room-name',
    name: 'room',
    type: 'text',
    autocomplete: 'off',
    required: true,
    'aria-describedby': 'create-error',
    enterkeyhint: 'next',
  });
  const nameInput = h('input', {
    id: 'user-name',
    name: 'name',
    type: 'text',
    autocomplete: 'nickname',
    required: true,
    value: lastName(),
    'aria-describedby': 'create-error',
    enterkeyhint: 'go',
  });
  const createError = h('p', { id: 'create-error', class: 'field-error', role: 'alert' });
  const createButton = h('button', { type: 'submit', class: 'primary', id: 'create-room' }, 'Create room');
  const form = h(
    'form',
    { class: 'stack', novalidate: true, 'aria-labelledby': 'create-title' },
    h('div', { class: 'field' }, h('label', { for: 'room-name' }, 'Room name'), roomInput),
    h('div', { class: 'field' }, h('label', { for: 'user-name' }, 'Your name'), nameInput),
    createError,
    h('div', { class: 'actions' }, createButton),
  );

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const problem = nameProblem(roomInput.value, 'room name') ?? nameProblem(nameInput.value, 'username');
    if (problem) {
      createError.textContent = problem;
      (nameProblem(roomInput.value, 'room name') ? roomInput : nameInput).focus();
      return;
    }
    createError.textContent = '';
    createButton.disabled = true;
    createButton.textContent = 'Creating…';
    try {
      const joined = await conn.request('create', { room: roomInput.value, name: nameInput.value });
      if (life.signal.aborted) return;
      saveIdentity({
        room: joined.room.id,
        member: joined.self.id,
        secret: joined.self.secret ?? '',
        roomName: joined.room.name,
        myName: joined.self.name,
      });
      navigate(`/r/${joined.room.id}`, { joined });
    } catch (err) {
      if (life.signal.aborted) return;
      const e = explain(err);
      createError.textContent = `${e.title}. ${e.text}`;
      createButton.disabled = false;
      createButton.textContent = 'Create room';
    }
  });

  const notice = ctx.handoff.notice ? h('p', { class: 'notice', role: 'status' }, ctx.handoff.notice) : null;

  // --- my rooms ---
  const roomsState = h('p', { id: 'rooms-state', class: 'muted', role: 'status' });
  const roomList = h('ul', { id: 'room-list', class: 'room-list' });
  const forgetAll = h('button', { type: 'button', class: 'secondary', id: 'forget-all' }, 'Forget all rooms');
  const roomsSection = h(
    'section',
    { class: 'card', 'aria-labelledby': 'rooms-title', id: 'my-rooms' },
    h('h2', { id: 'rooms-title' }, 'Your rooms'),
    roomsState,
    roomList,
    h('div', { class: 'actions rooms-actions' }, forgetAll),
    persistent ? null : h('p', { class: 'muted small' }, 'This browser does not keep data between visits (private mode?): your rooms will be forgotten when the tab closes.'),
  );

  forgetAll.addEventListener('click', async () => {
    const ok = await confirmDialog({
      title: 'Forget all rooms?',
      text: 'This browser will no longer be a member of any of them. To enter one again you will need a new invitation.',
      confirm: 'Forget all',
      danger: true,
    });
    if (!ok) return;
    forgetAllIdentities();
    showRooms();
    roomsState.textContent = 'All rooms forgotten.';
  });

  const howItWorks = h(
    'section',
    { class: 'card how', 'aria-labelledby': 'how-title', id: 'how-it-works' },
    h('h2', { id: 'how-title' }, 'How it works'),
    h(
      'ol',
      { class: 'steps' },
      h('li', null, h('strong', null, 'Create a room'), ' with a name for it and a name for you. No account, no e-mail, no password.'),
      h('li', null, h('strong', null, 'Send an invitation link'), ' to each person you want in the room.'),
      h('li', null, h('strong', null, 'Talk'), ': voice, video, screens and messages go straight between your browsers. This server only introduces you.'),
      h('li', null, h('strong', null, 'Come back'), ' any time from this page, under the same name: this browser remembers your rooms.'),
    ),
  );

  const home = h(
    'div',
    { class: 'home' },
    notice,
    h(
      'section',
      { class: 'card intro', 'aria-labelledby': 'page-title' },
      h('h1', { id: 'page-title', tabindex: '-1' }, 'Private calls and chat, straight between browsers'),
      h('p', { class: 'tagline' }, 'Small group calls with voice, video, screen sharing and text chat, on any device with a recent browser.'),
      h('h2', { id: 'create-title' }, 'Create a room'),
      form,
    ),
    h('div', { class: 'home-side' }, roomsSection, howItWorks),
  );
  replace(main, home);

  /** @type {Map<string, import('./protocol.js').RoomStatus>} */
  let statuses = new Map();
  let checking = false;
  let unreachable = false;

  /** Renders the list from local data and the last statuses. */
  function showRooms() {
    const ids = listIdentities();
    roomList.replaceChildren();
    forgetAll.hidden = ids.length === 0;
    howItWorks.hidden = ids.length > 0;
    home.classList.toggle('has-rooms', ids.length > 0);
    if (ids.length === 0) {
      roomsSection.dataset.state = 'empty';
      roomsSection.removeAttribute('aria-busy');
      roomsState.textContent = 'No rooms yet. Create one, or open an invitation link someone sent you.';
      return;
    }
    roomsSection.dataset.state = unreachable ? 'unreachable' : checking ? 'checking' : 'ready';
    roomsState.textContent = unreachable
      ? 'The server cannot be reached right now: your rooms are shown as this browser remembers them, and will be checked once it is back.'
      : checking
        ? 'Checking which of your rooms are still open…'
        : '';
    roomsSection.setAttribute('aria-busy', String(checking));
    for (const id of ids) {
      const st = statuses.get(id.room);
      const details = [`as ${st?.self ?? id.myName}`];
      if (st) {
        details.push(st.online ? `${people(st.online)} online` : 'nobody online');
        if (st.locked) details.push('locked');
      }
      const roomName = st?.name ?? id.roomName;
      roomList.append(
        h(
          'li',
          { 'data-room-id': id.room, 'data-alive': st ? 'true' : 'unknown' },
          h(
            'a',
            { href: `/r/${id.room}`, 'data-link': '', class: 'room-link' },
            h('span', { class: 'room-name' }, roomName),
            h('span', { class: 'room-details' }, details.join(' · ')),
          ),
          h(
            'button',
            {
              type: 'button',
              class: 'secondary small',
              'aria-label': `Forget ${roomName}`,
              onclick: async () => {
                const ok = await confirmDialog({
                  title: `Forget “${roomName}”?`,
                  text: 'This browser will no longer be a member of this room. To enter it again you will need a new invitation.',
                  confirm: 'Forget',
                  danger: true,
                });
                if (!ok) return;
                forgetIdentity(id.room);
                showRooms();
                roomsState.textContent = `Forgot “${roomName}”.`;
                forgetAll.focus();
              },
            },
            'Forget',
          ),
        ),
      );
    }
  }

  /** Asks the server which remembered rooms are alive. */
  async function check() {
    const ids = listIdentities();
    if (ids.length === 0 || checking) {
      showRooms();
      return;
    }
    checking = true;
    showRooms();
    try {
      /** @type {Map<string, import('./protocol.js').RoomStatus>} */
      const next = new Map();
      for (let i = 0; i < ids.length; i += STATUS_BATCH) {
        const batch = ids.slice(i, i + STATUS_BATCH).map(credentialsOf);
        const reply = await conn.request('status', { rooms: batch }, { retry: true });
        for (const st of reply.rooms) next.set(st.room, st);
      }
      if (life.signal.aborted) return;
      let closed = 0;
      for (const id of ids) {
        const st = next.get(id.room);
        if (st && !st.alive) {
          // Discarded, or my membership ended: the identity can never work again.
          forgetIdentity(id.room);
          next.delete(id.room);
          closed++;
        } else if (st?.name && st.self && (st.name !== id.roomName || st.self !== id.myName)) {
          touchIdentity(id.room, { roomName: st.name, myName: st.self, lastUsed: id.lastUsed });
        }
      }
      statuses = next;
      checking = false;
      unreachable = false;
      showRooms();
      if (closed > 0) {
        roomsState.textContent =
          closed === 1
            ? 'One room you were in has closed since, and was removed from this list.'
            : `${closed} rooms you were in have closed since, and were removed from this list.`;
      }
    } catch (err) {
      if (life.signal.aborted) return;
      checking = false;
      const code = /** @type {{code?: string}} */ (err).code;
      unreachable = code === 'timeout' || code === 'disconnected' || code === 'closed';
      showRooms();
      if (!unreachable) roomsState.textContent = `Your rooms could not be checked: ${explain(err).text}`;
    }
  }

  // Check again whenever the connection comes back after a failure.
  conn.on(
    'state',
    (s) => {
      // A check in progress is sent again by itself once the connection is back.
      if (s.state === 'open' && unreachable && !checking) check();
      if (s.state === 'reconnecting' && !unreachable) {
        unreachable = true;
        showRooms();
      }
    },
    { signal: life.signal },
  );
  if (conn.state === 'reconnecting') unreachable = true;
  check();

  return () => life.abort();
}
