// Entry point of the browser client: one ServerConnection for the page's
// life, client-side routing on location.pathname, and the connection
// banner.
//
//   /                        home: create a room, the rooms I am in
//   /r/<room>                the room (rejoins with the stored identity)
//   /r/<room>#invite=<token> an invitation: the token is read from the
//                            fragment (never sent to the server in a URL),
//                            kept in session storage for this tab only, and
//                            removed from the address bar at once.

import { h, byId, replace } from './dom.js';
import { ServerConnection } from './protocol.js';
import { getIdentity, inviteToken, keepInviteToken } from './identity.js';
import { renderHome } from './home.js';
import { renderJoin } from './join.js';
import { renderRoom, currentRoom } from './room.js';

/**
 * What a page gets to render itself.
 * @typedef {object} PageContext
 * @property {ServerConnection} conn the page's connection to the server
 * @property {HTMLElement} main the element the page renders into
 * @property {(path: string, handoff?: Handoff, replaceEntry?: boolean) => void} navigate goes to another page
 * @property {Handoff} handoff what the previous page passed on
 *
 * Data a page hands to the next one, in memory.
 * @typedef {object} Handoff
 * @property {import('./protocol.js').JoinedReply} [joined] the room just entered on this connection
 * @property {string} [notice] a sentence to show on arrival
 *
 * A page's render function returns its cleanup, run before the next page.
 * @typedef {() => void} Cleanup
 */

const ROOM_PATH = /^\/r\/([A-Za-z0-9_-]{1,64})\/?$/;

const conn = new ServerConnection();
/** @type {Cleanup | null} */
let cleanup = null;
let everOpen = false;

/**
 * The invitation token for a room: taken from the address bar's fragment
 * (and removed from it at once), or kept from earlier in this tab.
 * @param {string} roomId
 * @returns {string | null}
 */
function takeInviteToken(roomId) {
  const fromURL = new URLSearchParams(location.hash.slice(1)).get('invite');
  if (location.hash) history.replaceState(history.state, '', location.pathname);
  if (fromURL) keepInviteToken(roomId, fromURL);
  return fromURL ?? inviteToken(roomId);
}

/**
 * @param {Handoff} [handoff]
 * @param {boolean} [focus] move the focus to the new page's heading
 */
function route(handoff = {}, focus = false) {
  const previous = cleanup;
  cleanup = null;
  previous?.();
  const main = byId('main');
  main.replaceChildren();
  document.title = 'lepeerchat';
  /** @type {PageContext} */
  const ctx = { conn, main, navigate, handoff };
  const path = location.pathname;
  const room = ROOM_PATH.exec(path);
  if (path === '/' || path === '/index.html') {
    cleanup = renderHome(ctx);
  } else if (room) {
    const roomId = room[1];
    const token = takeInviteToken(roomId);
    if (getIdentity(roomId) || handoff.joined?.room.id === roomId) {
      cleanup = renderRoom(ctx, roomId, token);
    } else if (token) {
      cleanup = renderJoin(ctx, roomId, token);
    } else {
      renderNotMember(main);
    }
  } else {
    renderNotFound(main);
  }
  updateBanner();
  if (focus) main.querySelector('h1')?.focus();
}

/**
 * Goes to another page of the client without reloading.
 * @param {string} path
 * @param {Handoff} [handoff]
 * @param {boolean} [replaceEntry] replace the current history entry
 */
function navigate(path, handoff = {}, replaceEntry = false) {
  if (replaceEntry) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  route(handoff, true);
}

/** @param {HTMLElement} main */
function renderNotMember(main) {
  document.title = 'Invitation needed · lepeerchat';
  replace(
    main,
    h(
      'section',
      { class: 'card narrow', 'aria-labelledby': 'page-title' },
      h('h1', { id: 'page-title', tabindex: '-1' }, 'You need an invitation'),
      h(
        'p',
        null,
        'This browser is not a member of this room. To enter a room for the first time, open the invitation link its owner sent you (the whole link, including the part after #).',
      ),
      h('p', null, 'If you have been in this room on another device or browser, go back in from there.'),
      h('p', { class: 'actions' }, h('a', { href: '/', 'data-link': '', class: 'button primary' }, 'Go to the home page')),
    ),
  );
}

/** @param {HTMLElement} main */
function renderNotFound(main) {
  document.title = 'Not found · lepeerchat';
  replace(
    main,
    h(
      'section',
      { class: 'card narrow', 'aria-labelledby': 'page-title' },
      h('h1', { id: 'page-title', tabindex: '-1' }, 'Nothing here'),
      h('p', null, 'This address is not a page of lepeerchat.'),
      h('p', { class: 'actions' }, h('a', { href: '/', 'data-link': '', class: 'button primary' }, 'Go to the home page')),
    ),
  );
}

/** Shows the state of the connection when it is not simply open. */
function updateBanner() {
  const banner = byId('conn-banner');
  const state = conn.state;
  banner.dataset.state = state;
  if (state === 'open' || state === 'connecting' || state === 'idle') {
    banner.hidden = true;
    banner.replaceChildren();
    return;
  }
  banner.hidden = false;
  if (state === 'reconnecting') {
    const text = everOpen
      ? currentRoom()
        ? 'Server connection lost: reconnecting… The call goes on.'
        : 'Server connection lost: reconnecting…'
      : 'The server cannot be reached: trying again…';
    replace(
      banner,
      h('span', { class: 'spinner', 'aria-hidden': 'true' }),
      h('span', { class: 'banner-text' }, text),
      h('button', { type: 'button', class: 'secondary small', onclick: () => conn.retryNow() }, 'Retry now'),
    );
  } else {
    replace(
      banner,
      h('span', { class: 'banner-text' }, closedReason || 'Disconnected from the server.'),
      h('button', { type: 'button', class: 'secondary small', onclick: () => location.reload() }, 'Reload the page'),
    );
  }
}

let closedReason = '';

conn.on('state', (s) => {
  if (s.state === 'open') everOpen = true;
  if (s.state === 'closed') closedReason = s.reason ? sentence(s.reason) : '';
  updateBanner();
});

/**
 * @param {string} s
 * @returns {string}
 */
function sentence(s) {
  return s ? s[0].toUpperCase() + s.slice(1) + (s.endsWith('.') ? '' : '.') : s;
}

// Internal links navigate without reloading the page.
document.addEventListener('click', (ev) => {
  if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const a = ev.target instanceof Element ? ev.target.closest('a[data-link]') : null;
  if (!(a instanceof HTMLAnchorElement) || a.origin !== location.origin) return;
  ev.preventDefault();
  navigate(a.pathname + a.hash);
});

window.addEventListener('popstate', () => route({}, true));

conn.connect().catch(() => {});
route();
