// The identities this browser holds, one per room, in local storage: the
// room id, the member id and secret the server issued, and the names to
// show on the home page. The secret is the only proof of membership; it
// never leaves this browser except to this server (rejoin, status).

/**
 * @typedef {object} Identity
 * @property {string} room room id
 * @property {string} member member id
 * @property {string} secret member secret
 * @property {string} roomName the room's name, as last seen
 * @property {string} myName my username in the room
 * @property {number} lastUsed when this browser last entered the room (ms since the epoch)
 */

import { keyring } from './trust.js';

const KEY = 'lepeerchat.identities.v1';
const NAME_KEY = 'lepeerchat.lastName';

/** @type {Storage | null} */
let storage = null;
try {
  storage = window.localStorage;
  // Private modes may expose storage that throws on write.
  storage.setItem('lepeerchat.probe', '1');
  storage.removeItem('lepeerchat.probe');
} catch {
  storage = null;
}

/** @type {Record<string, Identity>} used when local storage is unavailable */
let memory = {};

/** @returns {Record<string, Identity>} */
function load() {
  if (!storage) return memory;
  try {
    const parsed = JSON.parse(storage.getItem(KEY) ?? '{}');
    /** @type {Record<string, Identity>} */
    const out = {};
    if (parsed && typeof parsed === 'object') {
      for (const [room, v] of Object.entries(parsed)) {
        if (isIdentity(v) && v.room === room) out[room] = v;
      }
    }
    return out;
  } catch {
    return {};
  }
}

/** @param {Record<string, Identity>} all */
function store(all) {
  if (!storage) {
    memory = all;
    return;
  }
  try {
    storage.setItem(KEY, JSON.stringify(all));
  } catch {
    memory = all;
  }
}

/**
 * @param {any} v
 * @returns {v is Identity}
 */
function isIdentity(v) {
  return (
    v !== null &&
    typeof v === 'object' &&
    typeof v.room === 'string' &&
    typeof v.member === 'string' &&
    typeof v.secret === 'string' &&
    typeof v.roomName === 'string' &&
    typeof v.myName === 'string' &&
    typeof v.lastUsed === 'number'
  );
}

/** True when identities survive a reload (local storage works). */
export const persistent = storage !== null;

/**
 * Every identity, the most recently used first.
 * @returns {Identity[]}
 */
export function listIdentities() {
  return Object.values(load()).sort((a, b) => b.lastUsed - a.lastUsed);
}

/**
 * @param {string} roomId
 * @returns {Identity | null}
 */
export function getIdentity(roomId) {
  return load()[roomId] ?? null;
}

/**
 * Saves (or replaces) the identity for its room, marked as used now.
 * @param {Omit<Identity, 'lastUsed'>} identity
 */
export function saveIdentity(identity) {
  const all = load();
  all[identity.room] = { ...identity, lastUsed: Date.now() };
  store(all);
  rememberName(identity.myName);
}

/**
 * Updates the names kept for a room and marks it as used now (or when
 * lastUsed says).
 * @param {string} roomId
 * @param {{roomName?: string, myName?: string, lastUsed?: number}} names
 */
export function touchIdentity(roomId, names) {
  const all = load();
  const id = all[roomId];
  if (!id) return;
  all[roomId] = { ...id, lastUsed: Date.now(), ...names };
  store(all);
}

/**
 * Forgets the identity of one room, with its identity key, certificate and
 * what was seen of the others (trust.js). Coming back will need an
 * invitation.
 * @param {string} roomId
 */
export function forgetIdentity(roomId) {
  const all = load();
  delete all[roomId];
  store(all);
  keyring.forgetRoom(roomId).catch((err) => console.debug('lepeerchat: keys of the room not forgotten', err));
}

/**
 * Forgets every identity, every key and certificate, and the username
 * kept to prefill forms.
 */
export function forgetAllIdentities() {
  store({});
  keyring.forgetAll().catch((err) => console.debug('lepeerchat: keys not forgotten', err));
  try {
    storage?.removeItem(NAME_KEY);
  } catch {
    // Nothing kept.
  }
}

/**
 * The credentials of an identity, as rejoin and status take them.
 * @param {Identity} id
 * @returns {import('./protocol.js').Credentials}
 */
export function credentialsOf(id) {
  return { room: id.room, member: id.member, secret: id.secret };
}

/**
 * The username last used in any room, to prefill forms.
 * @returns {string}
 */
export function lastName() {
  try {
    return storage?.getItem(NAME_KEY) ?? '';
  } catch {
    return '';
  }
}

/** @param {string} name */
function rememberName(name) {
  try {
    storage?.setItem(NAME_KEY, name);
  } catch {
    // Not worth more than a prefilled field.
  }
}

// An invitation token read from a link is kept in session storage (this tab
// only, gone when it closes) until it is used, so that a reload of the join
// page, whose address no longer shows it, does not lose it.

const INVITE_KEY = 'lepeerchat.invite.';

/**
 * @param {string} roomId
 * @param {string} token
 */
export function keepInviteToken(roomId, token) {
  try {
    sessionStorage.setItem(INVITE_KEY + roomId, token);
  } catch {
    // The token then lives only as long as the page.
  }
}

/**
 * @param {string} roomId
 * @returns {string | null}
 */
export function inviteToken(roomId) {
  try {
    return sessionStorage.getItem(INVITE_KEY + roomId);
  } catch {
    return null;
  }
}

/**
 * Forgets the invitation token kept for a room (used, or useless).
 * @param {string} roomId
 */
export function dropInviteToken(roomId) {
  try {
    sessionStorage.removeItem(INVITE_KEY + roomId);
  } catch {
    // Nothing kept.
  }
}
