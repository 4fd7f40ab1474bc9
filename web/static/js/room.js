// Room page: enters the room (or takes over the entry made by the home or
// join page), shows the members with their presence, the owner's tools,
// leaving, and the state of the connection; and hosts the call modules.
//
// ── Integration seam for mesh.js, media.js and chat.js ──────────────────
//
// Once the room is entered, this module imports ./mesh.js, ./media.js and
// ./chat.js (in parallel; a module that is missing or fails to load is
// skipped) and calls, in that order, the `mount` each exports:
//
//   export function mount(room) { ...; return () => { /* cleanup */ }; }
//
// `room` is a RoomSession (below). mount may be async; what it returns (or
// resolves to), if a function, is called when the room page goes away
// (leave, back to home, removed from the room), in reverse order; at the
// same moment room.lifetime (an AbortSignal) is aborted, so listeners added
// with {signal: room.lifetime} go by themselves. The modules share state
// by importing each other (ES modules are singletons).
//
// RoomSession (extends EventTarget; room.on(type, fn, {signal}) listens
// with a typed detail and returns an unsubscribe function):
//   room.conn          ServerConnection (protocol.js), already in the room
//   room.roomId, room.roomName
//   room.selfId, room.selfName
//   room.ownerId, room.isOwner, room.locked
//   room.members       Map<memberId, {id, name, online, key?}>, self
//                      included, in joining order; always current when an
//                      event fires (key: the identity key the server bound)
//   room.peers()       the other members, as an array
//   room.elements      {streams: <section id="streams">,
//                       mediaControls: <div id="media-controls">,
//                       chat: <section id="chat">}: empty containers the
//                      modules fill (#streams and #media-controls sit in the
//                      main column, #chat in the side column)
//   room.safety        the SafetyPanel (trust.js) in the people panel,
//                      under the member list, built with the page (nothing
//                      moves when the code comes), for RoomTrust to fill
//   room.iceServers    the STUN/TURN servers the server gave this member
//                      (RTCIceServer[]; [] when it gives none), kept
//                      fresh: "iceservers" fires when they are renewed
//   room.lifetime      AbortSignal, aborted when the room page goes away
//   room.sendSignal(to, data) → Promise: relays WebRTC signalling (data is
//                      any JSON object) to one member as a quiet signal:
//                      resolves once sent, rejects with a ProtocolError
//                      only if it could not be sent; the server's
//                      refusals (e.g. "peer_unavailable": the member has
//                      no connection right now) are logged
//   room.setPeerState(memberId, state, rttMs)
//                      shows a peer's connection in the member list: state
//                      "connecting" | "direct" | "relayed" | "failed" | null
//                      (clears), rttMs a number or null
//   room.setMemberActivity(memberId, {speaking, sharing})
//                      shows who speaks (boolean) and shares what (array of
//                      "microphone" | "camera" | "screen")
//   room.setMemberWarning(memberId, text, acknowledge)
//                      shows a warning in a member's row (text null hides
//                      it), with a button that calls acknowledge
// Events (detail):
//   "signal"              {from, data}: signalling from another member;
//                         the signals that came before the first listener
//                         are kept (bounded) and handed to it at once
//   "members"             {members}: the list changed (any reason below)
//   "member.joined"       {member}: a new member entered (and is online)
//   "member.connected"    {member}: a member came back online
//   "member.disconnected" {member}: a member's signalling connection is
//                         gone (closed tab, or the server restarting). Its
//                         peer connection may still carry media: do not
//                         tear that down on this alone.
//   "member.key"          {member}: a member's bound identity key changed
//   "member.left"         {member, kicked}: left for good, or was removed
//                         (also when this page's owner removed the member)
//   "owner"               {ownerId}: ownership passed to another member
//   "locked"              {locked}
//   "iceservers"          {iceServers}: new ICE servers (fresh TURN
//                         credentials); use them for new connections and
//                         ICE restarts (pc.setConfiguration)
//   "connection"          {state}: the ServerConnection's state
//                         ("open" | "reconnecting" | ...)
//   "rejoined"            {members}: signalling is back after a reconnect
//                         (or after "Use it here"); the member list was
//                         resynchronised and "members" fired
//   "detached"            {reason: "replaced"}: another tab of this browser
//                         took the room over; close peer connections and
//                         wait for "rejoined"
// Also exported: currentRoom() (the RoomSession, or null) and
// setPeerState(memberId, state, rttMs) (on the current room).

import { connectionTest } from './conntest.js';
import { h, replace } from './dom.js';
import { explain } from './errors.js';
import { credentialsOf, dropInviteToken, forgetIdentity, getIdentity, touchIdentity } from './identity.js';
import { mountOwnerTools } from './owner.js';
import { SafetyPanel } from './trust.js';
import { confirmDialog, people } from './ui.js';

/**
 * @typedef {{id: string, name: string, online: boolean, key?: string}} Member
 * @typedef {'connecting' | 'direct' | 'relayed' | 'failed'} PeerState
 * @typedef {'microphone' | 'camera' | 'screen'} Sharing
 * @typedef {{speaking?: boolean, sharing?: Sharing[]}} Activity
 */

/**
 * @typedef {{
 *   signal: {from: string, data: any},
 *   members: {members: Member[]},
 *   'member.joined': {member: Member},
 *   'member.connected': {member: Member},
 *   'member.disconnected': {member: Member},
 *   'member.key': {member: Member},
 *   'member.left': {member: Member, kicked: boolean},
 *   owner: {ownerId: string},
 *   locked: {locked: boolean},
 *   iceservers: {iceServers: RTCIceServer[]},
 *   connection: {state: import('./protocol.js').ConnectionState},
 *   rejoined: {members: Member[]},
 *   detached: {reason: 'replaced'},
 * }} RoomEvents
 */

/**
 * @typedef {object} RoomElements
 * @property {HTMLElement} streams
 * @property {HTMLElement} mediaControls
 * @property {HTMLElement} chat
 * @property {HTMLElement} safety where the safety code goes (see RoomSession#safety)
 */

/**
 * The call modules, loaded once the room is entered (see the seam above).
 * call.js wires mesh.js, media.js and chat.js (which have no mount of
 * their own) into the page.
 */
const MODULES = ['./call.js'];

/**
 * How many signals are kept for the call module until it listens: a few
 * per member of a full room (an offer and its candidates), beyond which
 * something is wrong and the offer watchdogs recover.
 */
const MAX_EARLY_SIGNALS = 1000;

/** @type {RoomSession | null} */
let current = null;

/**
 * The room this page is in, or null.
 * @returns {RoomSession | null}
 */
export function currentRoom() {
  return current;
}

/**
 * Shows a peer's connection state in the current room's member list.
 * @param {string} memberId
 * @param {PeerState | null} state
 * @param {number | null} [rttMs]
 */
export function setPeerState(memberId, state, rttMs = null) {
  current?.setPeerState(memberId, state, rttMs);
}

/** What the room page knows of the room it is in, for the call modules. */
export class RoomSession extends EventTarget {
  /**
   * @param {import('./protocol.js').ServerConnection} conn
   * @param {import('./protocol.js').JoinedReply} joined
   * @param {RoomElements} elements
   * @param {AbortSignal} lifetime
   * @param {RoomView} view
   */
  constructor(conn, joined, elements, lifetime, view) {
    super();
    this.conn = conn;
    this.roomId = joined.room.id;
    this.roomName = joined.room.name;
    this.selfId = joined.self.id;
    this.selfName = joined.self.name;
    this.ownerId = joined.room.owner;
    this.locked = joined.room.locked;
    /** @type {Map<string, Member>} */
    this.members = new Map();
    this.elements = elements;
    this.lifetime = lifetime;
    /** @type {RoomView} @internal the page's view; not for the call modules */
    this.view = view;
    for (const m of joined.room.members) this.members.set(m.id, { ...m });
    /** @type {RTCIceServer[]} */
    this.iceServers = joined.iceServers ?? [];
    this.safety = new SafetyPanel(elements.safety);
    /**
     * Signals that came before anyone listened for them (between the
     * "joined" reply and the call module's mount: the others' first offers
     * arrive then), handed to the first "signal" listener.
     * @type {Array<RoomEvents['signal']> | null}
     */
    this.earlySignals = [];
  }

  get isOwner() {
    return this.ownerId === this.selfId;
  }

  /** @returns {Member[]} the other members, in joining order */
  peers() {
    return [...this.members.values()].filter((m) => m.id !== this.selfId);
  }

  /**
   * @param {string} to member id
   * @param {object} data any JSON object
   * @returns {Promise<void>}
   */
  sendSignal(to, data) {
    return this.conn.signal(to, data);
  }

  /**
   * @param {string} memberId
   * @param {PeerState | null} state
   * @param {number | null} [rttMs]
   */
  setPeerState(memberId, state, rttMs = null) {
    this.view.peerState(memberId, state, rttMs);
  }

  /**
   * @param {string} memberId
   * @param {Activity} activity
   */
  setMemberActivity(memberId, activity) {
    this.view.activity(memberId, activity);
  }

  /**
   * @param {string} memberId
   * @param {string | null} text
   * @param {() => void} acknowledge
   */
  setMemberWarning(memberId, text, acknowledge) {
    this.view.warning(memberId, text, acknowledge);
  }

  /**
   * Listens to an event with a typed detail; returns an unsubscribe function.
   * @template {keyof RoomEvents} K
   * @param {K} type
   * @param {(detail: RoomEvents[K]) => void} fn
   * @param {{signal?: AbortSignal}} [options]
   * @returns {() => void}
   */
  on(type, fn, options = {}) {
    /** @param {Event} ev */
    const listener = (ev) => fn(/** @type {CustomEvent<RoomEvents[K]>} */ (ev).detail);
    this.addEventListener(type, listener, { signal: options.signal });
    if (type === 'signal' && this.earlySignals) {
      const early = this.earlySignals;
      this.earlySignals = null;
      for (const d of early) this.emit('signal', d);
    }
    return () => this.removeEventListener(type, listener);
  }

  /**
   * @template {keyof RoomEvents} K
   * @param {K} type
   * @param {RoomEvents[K]} detail
   */
  emit(type, detail) {
    if (type === 'signal' && this.earlySignals) {
      if (this.earlySignals.length < MAX_EARLY_SIGNALS) this.earlySignals.push(/** @type {RoomEvents['signal']} */ (detail));
      return;
    }
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** @returns {Member[]} */
  list() {
    return [...this.members.values()];
  }
}

/**
 * The member list and room header, kept in step with the session.
 */
class RoomView {
  /** @type {Map<string, HTMLLIElement>} */
  #items = new Map();
  /** @type {RoomSession | null} */
  session = null;
  /** @type {(member: Member) => void} the owner asks to remove a member */
  onRemove = () => {};

  constructor() {
    this.title = h('h1', { id: 'page-title', class: 'room-title', tabindex: '-1' });
    this.selfName = h('strong', { id: 'self-name' });
    this.ownerBadge = h('span', { class: 'badge', id: 'owner-badge', hidden: true }, 'Owner');
    this.lockedBadge = h('span', { class: 'badge badge-locked', id: 'locked-badge', hidden: true }, 'Locked');
    this.count = h('span', { class: 'count', id: 'member-count' });
    this.list = h('ul', { id: 'member-list', class: 'member-list' });
    this.banner = h('div', { id: 'room-banner', class: 'room-banner', role: 'status', hidden: true });
  }

  /** Renders every member, keeping the rows (and what modules put in them). */
  render() {
    const s = this.session;
    if (!s) return;
    this.title.textContent = s.roomName;
    this.selfName.textContent = s.selfName;
    this.ownerBadge.hidden = !s.isOwner;
    this.lockedBadge.hidden = !s.locked;
    const online = s.list().filter((m) => m.online).length;
    this.count.textContent = `${people(s.members.size)}, ${online} online`;
    for (const [id, li] of this.#items) {
      if (!s.members.has(id)) {
        li.remove();
        this.#items.delete(id);
      }
    }
    for (const m of s.members.values()) {
      let li = this.#items.get(m.id);
      if (!li) {
        li = this.#row(m);
        this.#items.set(m.id, li);
      }
      // Keep the server's (joining) order.
      this.list.append(li);
      li.dataset.online = String(m.online);
      li.classList.toggle('is-owner', m.id === s.ownerId);
      /** @type {HTMLElement} */ (li.querySelector('.member-name')).textContent = m.name;
      /** @type {HTMLElement} */ (li.querySelector('.tag-owner')).hidden = m.id !== s.ownerId;
      /** @type {HTMLElement} */ (li.querySelector('.member-status')).textContent = m.online ? 'online' : 'away';
      const remove = /** @type {HTMLButtonElement | null} */ (li.querySelector('.member-remove'));
      if (remove) {
        remove.hidden = !s.isOwner;
        remove.setAttribute('aria-label', `Remove ${m.name} from the room`);
      }
    }
  }

  /**
   * @param {Member} m
   * @returns {HTMLLIElement}
   */
  #row(m) {
    const self = m.id === this.session?.selfId;
    return h(
      'li',
      { class: 'member', 'data-member-id': m.id, 'data-self': String(self) },
      h('span', { class: 'presence', 'aria-hidden': 'true' }),
      h(
        'span',
        { class: 'member-main' },
        h('span', { class: 'member-name' }),
        self ? h('span', { class: 'tag' }, 'you') : null,
        h('span', { class: 'tag tag-owner', hidden: true }, 'owner'),
        h('span', { class: 'member-activity' }),
      ),
      h(
        'span',
        { class: 'member-side' },
        h('span', { class: 'member-status' }),
        self ? null : h('span', { class: 'peer-state', 'data-peer-state': '' }),
      ),
      self
        ? null
        : h(
            'button',
            {
              type: 'button',
              class: 'secondary small member-remove',
              hidden: true,
              onclick: () => {
                const member = this.session?.members.get(m.id);
                if (member) this.onRemove(member);
              },
            },
            'Remove',
          ),
    );
  }

  /**
   * @param {string} memberId
   * @param {PeerState | null} state
   * @param {number | null} rttMs
   */
  peerState(memberId, state, rttMs) {
    const el = /** @type {HTMLElement | null | undefined} */ (this.#items.get(memberId)?.querySelector('.peer-state'));
    if (!el) return;
    const words = { connecting: 'connecting…', direct: 'direct', relayed: 'relayed', failed: 'no connection' };
    el.dataset.peerState = state ?? '';
    el.textContent = state ? words[state] + (typeof rttMs === 'number' && state !== 'failed' ? ` · ${Math.round(rttMs)} ms` : '') : '';
  }

  /**
   * @param {string} memberId
   * @param {Activity} activity
   */
  activity(memberId, activity) {
    const li = this.#items.get(memberId);
    const el = li?.querySelector('.member-activity');
    if (!li || !el) return;
    li.classList.toggle('speaking', !!activity.speaking);
    const words = [];
    if (activity.speaking) words.push('speaking');
    const sharing = activity.sharing ?? [];
    if (sharing.length) words.push(`sharing ${sharing.join(', ')}`);
    el.textContent = words.join(' · ');
  }

  /**
   * Shows a warning in a member's row, with a button that acknowledges it,
   * or removes it with null. The row keeps it across renders; the same
   * text again changes nothing.
   * @param {string} memberId
   * @param {string | null} text
   * @param {() => void} acknowledge
   */
  warning(memberId, text, acknowledge) {
    const li = this.#items.get(memberId);
    if (!li) return;
    const shown = li.querySelector('.member-warning');
    // Said once: an alert read again on every update would drown the page.
    if (text !== null && shown?.querySelector('p')?.textContent === text) return;
    shown?.remove();
    if (text === null) return;
    const name = this.session?.members.get(memberId)?.name ?? '';
    const ok = h('button', { type: 'button', class: 'secondary small member-warning-ok', 'aria-label': `I checked the safety code with ${name}` }, 'I checked');
    ok.addEventListener('click', () => acknowledge());
    li.append(h('div', { class: 'member-warning', role: 'alert' }, h('p', null, text), ok));
  }

  /**
   * Shows a message above the room, or hides it with null.
   * @param {string | null} text
   * @param {HTMLElement | null} [action]
   */
  say(text, action = null) {
    this.banner.hidden = text === null;
    replace(this.banner, text === null ? null : h('span', null, text), action);
  }
}

/**
 * @param {import('./app.js').PageContext} ctx
 * @param {string} roomId
 * @param {string | null} token an invitation token for this room, if any
 * @returns {import('./app.js').Cleanup}
 */
export function renderRoom(ctx, roomId, token) {
  const { conn, main, navigate } = ctx;
  const life = new AbortController();
  // Fetched while the room is entered, not after: the others' offers
  // arrive as soon as it is.
  const modules = importModules();
  /** @type {Array<() => void>} */
  const cleanups = [];
  /** @type {RoomSession | null} */
  let session = null;
  let attached = false;

  /** Enters the room with the identity this browser keeps. */
  async function enter() {
    const identity = getIdentity(roomId);
    if (!identity) {
      ended({ title: 'You are not a member of this room', text: 'Open an invitation link to enter it.' });
      return;
    }
    document.title = `${identity.roomName} · lepeerchat`;
    replace(
      main,
      h(
        'section',
        { class: 'card narrow', id: 'entering', 'aria-busy': 'true' },
        h('h1', { id: 'page-title', tabindex: '-1' }, identity.roomName),
        h('p', { class: 'muted', role: 'status' }, 'Entering the room…'),
      ),
    );
    try {
      const joined = await conn.request('rejoin', credentialsOf(identity), { retry: true, timeout: 30_000 });
      if (life.signal.aborted) {
        conn.request('leave', {}).catch(() => {});
        return;
      }
      show(joined);
    } catch (err) {
      if (life.signal.aborted) return;
      const e = explain(err);
      if (e.gone) {
        forgetIdentity(roomId);
        // An invitation for the room may still let this browser in anew.
        if (token) {
          navigate(`/r/${roomId}`, {}, true);
          return;
        }
      }
      ended(e, e.retry ? () => enter() : null);
    }
  }

  /**
   * Builds the room page around a "joined" reply.
   * @param {import('./protocol.js').JoinedReply} joined
   */
  function show(joined) {
    attached = true;
    dropInviteToken(roomId);
    const identity = getIdentity(roomId);
    if (identity) {
      touchIdentity(roomId, { roomName: joined.room.name, myName: joined.self.name });
      conn.setRejoin(credentialsOf(identity));
    }
    document.title = `${joined.room.name} · lepeerchat`;

    const view = new RoomView();
    const streams = h('section', { id: 'streams', 'aria-label': 'Streams' });
    const mediaControls = h('div', { id: 'media-controls', role: 'group', 'aria-label': 'Microphone, camera and screen' });
    const chat = h('section', { id: 'chat', 'aria-label': 'Chat' });
    const safety = h('div', { id: 'safety', class: 'safety', role: 'group' });
    const s = new RoomSession(conn, joined, { streams, mediaControls, chat, safety }, life.signal, view);
    session = s;
    current = s;
    view.session = s;

    const ownerTools = h('details', { id: 'owner-tools', class: 'panel owner-tools', hidden: true });
    const leaveButton = h('button', { type: 'button', class: 'secondary', id: 'leave-button' }, 'Leave');
    leaveButton.addEventListener('click', () => leave());

    const root = h(
      'div',
      { class: 'room', id: 'room', 'data-room-id': s.roomId },
      h(
        'header',
        { class: 'room-head' },
        h(
          'div',
          { class: 'room-heading' },
          view.title,
          h('p', { class: 'room-meta' }, h('span', null, 'You are ', view.selfName), view.ownerBadge, view.lockedBadge),
        ),
        h('div', { class: 'room-actions' }, leaveButton),
      ),
      view.banner,
      h(
        'div',
        { class: 'room-body' },
        h(
          'div',
          { class: 'stage' },
          streams,
          h('p', { class: 'stage-hint muted' }, 'Nobody is sharing a microphone, camera or screen yet.'),
          mediaControls,
        ),
        h(
          'div',
          { class: 'side' },
          h(
            'section',
            { id: 'members', class: 'panel', 'aria-labelledby': 'members-title' },
            h('h2', { id: 'members-title' }, 'People ', view.count),
            view.list,
            safety,
            connectionTest(s),
          ),
          ownerTools,
          chat,
        ),
      ),
    );
    view.onRemove = async (member) => {
      const ok = await confirmDialog({
        title: `Remove ${member.name}?`,
        text: 'They leave the room at once, their name is freed, and they need a new invitation to come back.',
        confirm: 'Remove',
        danger: true,
      });
      if (!ok || life.signal.aborted) return;
      try {
        await conn.request('kick', { member: member.id });
        // The others are told; the owner learns it from the reply.
        if (s.members.delete(member.id)) {
          changed();
          s.emit('member.left', { member, kicked: true });
        }
      } catch (err) {
        const e = explain(err);
        view.say(`${member.name} could not be removed: ${e.text}`);
      }
    };
    replace(main, root);
    view.render();
    mountOwnerTools(ownerTools, s);
    root.dataset.conn = conn.state;

    const signal = life.signal;
    /** @param {import('./protocol.js').MemberView} m */
    const upsert = (m) => {
      /** @type {Member} */
      const member = { id: m.id, name: m.name, online: m.online };
      if (m.key) member.key = m.key;
      s.members.set(m.id, member);
      return member;
    };
    const changed = () => {
      view.render();
      s.emit('members', { members: s.list() });
    };
    conn.on('signal', (msg) => s.emit('signal', { from: msg.from, data: msg.data }), { signal });
    // Refusals of quiet signals (a peer that just left) and of frames the
    // server could not read: nothing waits for them.
    conn.on('error', (err) => console.debug('lepeerchat: refused by the server:', err.code, err.message, err.re ?? ''), { signal });
    conn.on(
      'member.joined',
      (msg) => {
        const member = upsert({ ...msg.member, online: true });
        changed();
        s.emit('member.joined', { member });
      },
      { signal },
    );
    conn.on(
      'member.connected',
      (msg) => {
        const member = upsert({ ...msg.member, online: true });
        changed();
        s.emit('member.connected', { member });
      },
      { signal },
    );
    conn.on(
      'member.disconnected',
      (msg) => {
        const member = upsert({ ...msg.member, online: false });
        changed();
        s.emit('member.disconnected', { member });
      },
      { signal },
    );
    conn.on(
      'member.key',
      (msg) => {
        if (!s.members.has(msg.member.id)) return;
        const member = upsert({ ...msg.member, online: true });
        changed();
        s.emit('member.key', { member });
      },
      { signal },
    );
    conn.on(
      'member.left',
      (msg) => {
        const member = s.members.get(msg.member) ?? { id: msg.member, name: '', online: false };
        s.members.delete(msg.member);
        const ownerChanged = msg.owner && msg.owner !== s.ownerId;
        if (ownerChanged) s.ownerId = msg.owner;
        changed();
        s.emit('member.left', { member, kicked: !!msg.kicked });
        if (ownerChanged) s.emit('owner', { ownerId: s.ownerId });
      },
      { signal },
    );
    conn.on(
      'room.locked',
      (msg) => {
        s.locked = msg.locked;
        view.render();
        s.emit('locked', { locked: msg.locked });
      },
      { signal },
    );
    conn.on(
      'state',
      (st) => {
        root.dataset.conn = st.state;
        s.emit('connection', { state: st.state });
      },
      { signal },
    );
    conn.on(
      'ice.servers',
      (msg) => {
        s.iceServers = msg.iceServers ?? [];
        s.emit('iceservers', { iceServers: s.iceServers });
      },
      { signal },
    );
    conn.on('rejoined', (joined) => resync(joined), { signal });
    conn.on('rejoinfailed', (err) => gone(err), { signal });
    conn.on(
      'session.replaced',
      () => {
        attached = false;
        const useHere = h('button', { type: 'button', class: 'primary small', id: 'use-here' }, 'Use it here');
        useHere.addEventListener('click', async () => {
          useHere.disabled = true;
          const identity = getIdentity(roomId);
          if (!identity) return;
          try {
            const joined = await conn.request('rejoin', credentialsOf(identity), { retry: true });
            conn.setRejoin(credentialsOf(identity));
            resync(joined);
          } catch (err) {
            const e = explain(err);
            if (e.gone) gone(err);
            else {
              useHere.disabled = false;
              view.say(`${e.title}. ${e.text}`, useHere);
            }
          }
        });
        view.say('This room is now open in another tab or window of this browser, which took it over.', useHere);
        s.emit('detached', { reason: 'replaced' });
      },
      { signal },
    );
    conn.on(
      'session.kicked',
      () => {
        attached = false;
        forgetIdentity(roomId);
        ended({
          title: 'You are no longer in this room',
          text: 'The owner removed you from the room, or you left it for good from another tab. To come back you need a new invitation.',
        });
      },
      { signal },
    );

    /**
     * Takes the room view the server sent on a rejoin as the truth.
     * @param {import('./protocol.js').JoinedReply} joined
     */
    function resync(joined) {
      attached = true;
      view.say(null);
      s.members.clear();
      for (const m of joined.room.members) upsert(m);
      const ownerChanged = joined.room.owner !== s.ownerId;
      s.ownerId = joined.room.owner;
      s.locked = joined.room.locked;
      if (joined.iceServers) {
        s.iceServers = joined.iceServers;
        s.emit('iceservers', { iceServers: s.iceServers });
      }
      changed();
      if (ownerChanged) s.emit('owner', { ownerId: s.ownerId });
      s.emit('locked', { locked: s.locked });
      s.emit('rejoined', { members: s.list() });
    }

    loadModules(s, cleanups, modules);
  }

  /**
   * The membership ended while on the page (discarded room, lost identity).
   * @param {unknown} err
   */
  function gone(err) {
    attached = false;
    const e = explain(err);
    if (e.gone) forgetIdentity(roomId);
    ended(e);
  }

  /**
   * Replaces the page by a message, ending the call modules.
   * @param {{title: string, text: string}} e
   * @param {(() => void) | null} [retry]
   */
  function ended(e, retry = null) {
    stopModules();
    conn.setRejoin(null);
    const actions = h('div', { class: 'actions' });
    if (retry) actions.append(h('button', { type: 'button', class: 'primary', onclick: retry }, 'Try again'));
    actions.append(h('a', { href: '/', 'data-link': '', class: retry ? 'button secondary' : 'button primary' }, 'Go to the home page'));
    replace(
      main,
      h(
        'section',
        { class: 'card narrow', id: 'room-ended', 'aria-labelledby': 'page-title' },
        h('h1', { id: 'page-title', tabindex: '-1' }, e.title),
        h('p', { role: 'alert' }, e.text),
        actions,
      ),
    );
    main.querySelector('h1')?.focus();
  }

  function stopModules() {
    if (current === session) current = null;
    for (const c of cleanups.splice(0).reverse()) {
      try {
        c();
      } catch (err) {
        console.error('lepeerchat: cleanup failed', err);
      }
    }
  }

  /** Asks how to leave: for now (back home), or for good. */
  async function leave() {
    const s = session;
    if (!s) return;
    const choice = await leaveDialog(s.isOwner, s.members.size);
    if (choice === 'now') {
      navigate('/', { notice: `You left “${s.roomName}” for now. It stays in your rooms below.` });
    } else if (choice === 'forever') {
      try {
        if (attached) await conn.request('leave', { forever: true });
      } catch (err) {
        const e = explain(err);
        if (!e.gone) {
          s.view.say(`Could not leave the room: ${e.text}`);
          return;
        }
      }
      attached = false;
      forgetIdentity(roomId);
      navigate('/', { notice: `You left “${s.roomName}” for good.` });
    }
  }

  const handoff = ctx.handoff.joined;
  if (handoff && handoff.room.id === roomId) show(handoff);
  else enter();

  return () => {
    life.abort();
    stopModules();
    conn.setRejoin(null);
    // Leave for now: the membership stays, the others see me away.
    if (attached) conn.request('leave', {}).catch(() => {});
  };
}

/**
 * Imports the call modules; a module that fails to load is null.
 * @returns {Promise<Array<any>>}
 */
function importModules() {
  return Promise.all(
    MODULES.map((spec) =>
      import(spec).catch((err) => {
        console.warn(`lepeerchat: ${spec} not loaded`, err);
        return null;
      }),
    ),
  );
}

/**
 * Mounts the call modules (see the seam at the top).
 * @param {RoomSession} session
 * @param {Array<() => void>} cleanups
 * @param {Promise<Array<any>>} imported from importModules
 */
async function loadModules(session, cleanups, imported) {
  const loaded = await imported;
  for (let i = 0; i < MODULES.length; i++) {
    const mod = loaded[i];
    if (session.lifetime.aborted) return;
    if (!mod || typeof mod.mount !== 'function') continue;
    try {
      const cleanup = await mod.mount(session);
      if (typeof cleanup !== 'function') continue;
      if (session.lifetime.aborted) cleanup();
      else cleanups.push(cleanup);
    } catch (err) {
      console.error(`lepeerchat: ${MODULES[i]} failed to start`, err);
    }
  }
}

/**
 * The leave dialog: "now", "forever" or null (cancelled).
 * @param {boolean} owner
 * @param {number} members how many members the room has, me included
 * @returns {Promise<'now' | 'forever' | null>}
 */
async function leaveDialog(owner, members) {
  const choice = await new Promise((resolve) => {
    const dialog = h(
      'dialog',
      { 'aria-labelledby': 'leave-title', id: 'leave-dialog' },
      h(
        'form',
        { method: 'dialog' },
        h('h2', { id: 'leave-title' }, 'Leave the room?'),
        h('p', null, 'Leave for now: you stay a member and can come back from the home page, under the same name, even if the room gets locked.'),
        h('p', null, 'Leave for good: your name is freed and you need a new invitation to come back.'),
        h(
          'div',
          { class: 'actions' },
          h('button', { type: 'submit', value: 'cancel', class: 'secondary' }, 'Stay'),
          h('button', { type: 'submit', value: 'forever', class: 'danger', id: 'leave-forever' }, 'Leave for good'),
          h('button', { type: 'submit', value: 'now', class: 'primary', id: 'leave-now' }, 'Leave for now'),
        ),
      ),
    );
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue);
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
    /** @type {HTMLElement | null} */ (dialog.querySelector('#leave-now'))?.focus();
  });
  if (choice === 'now') return 'now';
  if (choice !== 'forever') return null;
  const sure = await confirmDialog({
    title: 'Leave for good?',
    text:
      members <= 1
        ? 'You are its only member: the room is deleted at once, with its invitations.'
        : owner
          ? 'You own this room: the member who has been in it longest becomes its owner. You will need a new invitation to come back.'
          : 'You will need a new invitation to come back.',
    confirm: 'Leave for good',
    danger: true,
  });
  return sure ? 'forever' : null;
}
