// The lepeerchat wire protocol (docs/protocol.md), as a ServerConnection
// usable without any UI: one WebSocket to /ws of the page's own server,
// requests with ids answered by promises, pushed messages as events, a
// liveness ping, and automatic reconnection that silently rejoins the room
// this connection spoke for, so that a call (whose media is peer to peer)
// goes on while the server restarts or the network blinks.
//
//   const conn = new ServerConnection();
//   conn.on('state', (s) => console.log(s.state));
//   const joined = await conn.request('rejoin', creds);
//   conn.setRejoin(creds);            // rejoin by itself after a reconnect
//   conn.on('member.connected', ({ member }) => ...);
//
// create, join and rejoin carry this browser's identity key for the room
// (trust.js): the connection adds it by itself.

import { keyring } from './trust.js';

/** WebSocket subprotocol naming the protocol version this client speaks. */
export const SUBPROTOCOL = 'lepeerchat.v1';
/** Protocol version announced by a compatible server's welcome. */
export const PROTOCOL_VERSION = 1;

/**
 * @typedef {{id: string, name: string, online: boolean, key?: string}} MemberView
 * @typedef {{id: string, name: string, owner: string, locked: boolean, members: MemberView[]}} RoomView
 * @typedef {{id: string, name: string, secret?: string, key?: string}} SelfView
 * @typedef {{urls: string[], username?: string, credential?: string}} IceServer
 * @typedef {{type: 'joined', re?: number, room: RoomView, self: SelfView, iceServers?: IceServer[], iceExpires?: string}} JoinedReply
 * @typedef {{room: string, member: string, secret: string}} Credentials
 * @typedef {{room: string, alive: boolean, name?: string, self?: string, online?: number, locked?: boolean}} RoomStatus
 * @typedef {{id: string, token?: string, created: string, expires: string, singleUse: boolean}} InviteView
 * @typedef {{maxMessageBytes: number, ratePerSecond: number, burst: number, maxNameLength: number, maxMembers: number}} Limits
 * @typedef {{type: 'welcome', version: number, features?: string[], limits: Limits}} Welcome
 * @typedef {{type: 'ok', re?: number}} OkReply
 */

/**
 * Every request: its fields (besides "type" and "id") and its positive reply.
 * The identity key of create, join and rejoin is added by the connection
 * (see IdentityKeys).
 * @typedef {{
 *   ping: [{}, {type: 'pong'}],
 *   create: [{room: string, name: string}, JoinedReply],
 *   join: [{room: string, invite: string, name: string}, JoinedReply],
 *   rejoin: [Credentials, JoinedReply],
 *   invitation: [{room: string, invite: string}, {type: 'invitation', room: {id: string, name: string}}],
 *   status: [{rooms: Credentials[]}, {type: 'status', rooms: RoomStatus[]}],
 *   invite: [{ttl?: number, singleUse?: boolean}, {type: 'invite', invite: InviteView}],
 *   invites: [{}, {type: 'invites', invites: InviteView[]}],
 *   revoke: [{invite: string}, OkReply],
 *   lock: [{locked: boolean}, OkReply],
 *   kick: [{member: string}, OkReply],
 *   leave: [{forever?: boolean}, OkReply],
 *   signal: [{to: string, data: object}, OkReply],
 * }} Requests
 */

/**
 * Where the connection takes the identity key it announces (protocol §7.2):
 * for a rejoin the member's own, for a create or join a new one, kept as
 * the member's once the server answers with its id. trust.js's keyring.
 * @typedef {{
 *   identity(room: string, member: string): Promise<{key: string}>,
 *   fresh(): Promise<import('./trust.js').IdentityKey>,
 *   keep(room: string, member: string, key: import('./trust.js').IdentityKey): Promise<void>,
 * }} IdentityKeys
 */

/** The requests that announce an identity key. */
const IDENTIFYING = new Set(['create', 'join', 'rejoin']);

/**
 * connecting: the first attempt; open: usable (and back in the room, if
 * any); reconnecting: the socket dropped or never opened, a new attempt is
 * scheduled; closed: close() was called, or the server is incompatible.
 * @typedef {'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed'} ConnectionState
 */

/**
 * @typedef {object} StateChange
 * @property {ConnectionState} state
 * @property {ConnectionState} previous
 * @property {number} [code] close code of the socket that dropped
 * @property {string} [reason] why, in words
 * @property {number} [retryIn] milliseconds until the next attempt
 * @property {number} [attempt] attempts since the connection was last open
 */

/**
 * Events, by name, with the detail each carries. Server pushes keep the
 * server's message as detail; "error" is an error reply that answers no
 * request: one without "re" (rate_limited, too_large, bad_json), or the
 * refusal of a quiet signal (its "re" in the detail).
 * @typedef {{
 *   state: StateChange,
 *   welcome: Welcome,
 *   signal: {type: 'signal', from: string, data: any},
 *   'member.joined': {type: 'member.joined', member: MemberView},
 *   'member.connected': {type: 'member.connected', member: MemberView},
 *   'member.disconnected': {type: 'member.disconnected', member: MemberView},
 *   'member.key': {type: 'member.key', member: MemberView},
 *   'member.left': {type: 'member.left', member: string, kicked?: boolean, owner: string},
 *   'room.locked': {type: 'room.locked', locked: boolean},
 *   'session.replaced': {type: 'session.replaced'},
 *   'session.kicked': {type: 'session.kicked'},
 *   'ice.servers': {type: 'ice.servers', iceServers: IceServer[], iceExpires?: string},
 *   rejoined: JoinedReply,
 *   rejoinfailed: ProtocolError,
 *   error: ProtocolError,
 * }} ServerEvents
 */

/**
 * @typedef {object} ConnectionOptions
 * @property {string} [url] WebSocket URL; default /ws of the page's origin
 * @property {number} [requestTimeout] ms before a request fails with "timeout" (10 s)
 * @property {number} [pingInterval] ms between liveness pings (15 s)
 * @property {number} [pongTimeout] ms a ping may take before the socket is deemed dead (8 s)
 * @property {number} [backoffBase] first reconnection delay, ms (500)
 * @property {number} [backoffMax] longest reconnection delay, ms (30 s)
 * @property {IdentityKeys | null} [keys] identity keys to announce (the page's keyring; null: none)
 */

/**
 * A refusal from the server (code and message as sent), or a failure of the
 * connection: code "timeout" (no answer in time), "disconnected" (the
 * connection dropped before the answer) or "closed" (the connection was
 * closed for good).
 */
export class ProtocolError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = 'ProtocolError';
    /** Stable, machine-readable reason. */
    this.code = code;
    /**
     * The id of the refused message, when the server named it.
     * @type {number | undefined}
     */
    this.re = undefined;
  }
}

/** Refusals of a silent rejoin after which trying again cannot help. */
const FINAL_REJOIN_CODES = new Set(['bad_credentials', 'room_not_found', 'bad_message']);

/**
 * The WebSocket URL of the page's own server: wss: on https pages, ws: on
 * http ones.
 * @returns {string}
 */
export function defaultServerURL() {
  const url = new URL('/ws', location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}

/**
 * @typedef {object} PendingRequest
 * @property {string} type
 * @property {object} fields
 * @property {(reply: any) => void} resolve
 * @property {(err: ProtocolError) => void} reject
 * @property {ReturnType<typeof setTimeout> | undefined} timer
 * @property {boolean} retry send again after a reconnect instead of failing
 * @property {boolean} internal sent before the connection counts as open
 * @property {boolean} [quiet] a signal sent quiet when the server can
 *   (protocol §4.12): settled once written, since only a refusal is answered
 * @property {number} [quietBefore] the id of the last quiet signal sent
 *   before this request
 */

/**
 * One logical connection to the lepeerchat server, kept up across socket
 * drops until close() is called.
 */
export class ServerConnection extends EventTarget {
  /** @type {ConnectionState} */
  #state = 'idle';
  /** @type {WebSocket | null} */
  #ws = null;
  #nextId = 1;
  /** @type {Map<number, PendingRequest>} requests sent, awaiting their reply */
  #inFlight = new Map();
  /** @type {PendingRequest[]} requests waiting for the connection to open */
  #waiting = [];
  /** @type {Credentials | null} */
  #rejoin = null;
  #attempt = 0;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #retryTimer;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #pingTimer;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #welcomeTimer;
  #lastHeard = 0;
  #listening = false;
  /** The id of the last quiet signal sent. */
  #lastQuietId = 0;
  /** Every message up to this id is known to have been answered or relayed. */
  #settledId = 0;

  /** @param {ConnectionOptions} [options] */
  constructor(options = {}) {
    super();
    this.url = options.url ?? defaultServerURL();
    this.requestTimeout = options.requestTimeout ?? 10_000;
    this.pingInterval = options.pingInterval ?? 15_000;
    this.pongTimeout = options.pongTimeout ?? 8_000;
    this.backoffBase = options.backoffBase ?? 500;
    this.backoffMax = options.backoffMax ?? 30_000;
    /** @type {IdentityKeys | null} */
    this.keys = options.keys === undefined ? keyring : options.keys;
    /** @type {Welcome | null} the last welcome: version and limits */
    this.welcome = null;
  }

  /** @returns {ConnectionState} */
  get state() {
    return this.#state;
  }

  /** The credentials rejoined after a reconnect, if any. */
  get rejoinCredentials() {
    return this.#rejoin;
  }

  /**
   * Opens the connection (once; later calls only wait) and resolves when it
   * is open.
   * @returns {Promise<void>}
   */
  connect() {
    if (this.#state === 'idle' || this.#state === 'closed') {
      this.#listen(true);
      this.#attempt = 0;
      this.#dial('connecting');
    }
    return this.whenOpen();
  }

  /**
   * Resolves the next time the connection is open (at once if it is).
   * Rejects if it is closed for good first.
   * @returns {Promise<void>}
   */
  whenOpen() {
    if (this.#state === 'open') return Promise.resolve();
    if (this.#state === 'closed') return Promise.reject(new ProtocolError('closed', 'the connection is closed'));
    return new Promise((resolve, reject) => {
      /** @param {Event} ev */
      const onState = (ev) => {
        const { state } = /** @type {CustomEvent<StateChange>} */ (ev).detail;
        if (state === 'open' || state === 'closed') {
          this.removeEventListener('state', onState);
          if (state === 'open') resolve();
          else reject(new ProtocolError('closed', 'the connection is closed'));
        }
      };
      this.addEventListener('state', onState);
    });
  }

  /**
   * Sets the room membership to rejoin silently after every reconnect, or
   * none. Set it once the room has been entered; clear it when leaving.
   * @param {Credentials | null} creds
   */
  setRejoin(creds) {
    this.#rejoin = creds ? { room: creds.room, member: creds.member, secret: creds.secret } : null;
  }

  /**
   * Sends a request and resolves with its positive reply. Rejects with a
   * ProtocolError carrying the server's code and message on a refusal, or
   * "timeout", "disconnected" or "closed". While the connection is not open
   * the request waits for it (within its timeout). With retry, a request
   * cut by a dropped socket is sent again after the reconnect: use it only
   * for requests that change nothing (status, invitation, invites, ping).
   * @template {keyof Requests} K
   * @param {K} type
   * @param {Requests[K][0]} [fields]
   * @param {{timeout?: number, retry?: boolean}} [options]
   * @returns {Promise<Requests[K][1]>}
   */
  request(type, fields, options = {}) {
    const timeout = options.timeout ?? this.requestTimeout;
    const retry = options.retry ?? false;
    if (IDENTIFYING.has(type)) return this.#identified(type, fields ?? {}, timeout, retry, false);
    return this.#request(type, fields ?? {}, timeout, retry, false);
  }

  /**
   * Relays a signal, quiet when the server lists the "quiet" feature
   * (protocol §4.12): the server then answers it only if it refuses it,
   * and the promise resolves once the signal is written to the socket; a
   * refusal arrives later as an "error" event whose detail has the
   * signal's id as `re`. With an older server it is an ordinary request.
   * While the connection is not open it waits, like a request, and
   * rejects with "timeout" or "closed" if it could not be sent.
   * @param {string} to member id
   * @param {object} data any JSON object
   * @returns {Promise<void>}
   */
  signal(to, data) {
    return this.#request('signal', { to, data }, this.requestTimeout, false, false, true).then(() => {});
  }

  /**
   * Listens to an event with a typed detail; returns a function that stops
   * listening. Pass an AbortSignal to stop with it instead.
   * @template {keyof ServerEvents} K
   * @param {K} type
   * @param {(detail: ServerEvents[K]) => void} fn
   * @param {{signal?: AbortSignal}} [options]
   * @returns {() => void}
   */
  on(type, fn, options = {}) {
    /** @param {Event} ev */
    const listener = (ev) => fn(/** @type {CustomEvent<ServerEvents[K]>} */ (ev).detail);
    this.addEventListener(type, listener, { signal: options.signal });
    return () => this.removeEventListener(type, listener);
  }

  /**
   * While reconnecting, tries at once instead of waiting for the end of
   * the backoff (for a "retry now" button).
   */
  retryNow() {
    if (this.#state === 'reconnecting' && !this.#ws) {
      this.#attempt = 0;
      this.#dial('reconnecting');
    }
  }

  /**
   * Closes the connection for good: pending requests fail with "closed" and
   * no reconnection follows.
   */
  close() {
    if (this.#state === 'closed' || this.#state === 'idle') return;
    this.#rejoin = null;
    const ws = this.#ws;
    this.#forgetSocket();
    clearTimeout(this.#retryTimer);
    this.#listen(false);
    ws?.close(1000, 'bye');
    this.#failAll(new ProtocolError('closed', 'the connection was closed'));
    this.#setState('closed', { reason: 'closed by the page' });
  }

  // --- internals -----------------------------------------------------

  /**
   * A create, join or rejoin with this browser's identity key for the
   * room; the new key of a create or join is kept as the member's once the
   * reply names it. Without WebCrypto or IndexedDB (an insecure context),
   * or when the keyring does not answer in time (a hung IndexedDB: see
   * trust.js's KEYRING_WAIT_MS), the request goes without a key.
   * @param {string} type
   * @param {any} fields
   * @param {number} timeout
   * @param {boolean} retry
   * @param {boolean} internal
   * @returns {Promise<any>}
   */
  async #identified(type, fields, timeout, retry, internal) {
    /** @type {import('./trust.js').IdentityKey | null} */
    let fresh = null;
    /** @type {string | undefined} */
    let key;
    try {
      if (this.keys && type === 'rejoin') {
        key = (await this.keys.identity(fields.room, fields.member)).key;
      } else if (this.keys) {
        fresh = await this.keys.fresh();
        key = fresh.key;
      }
    } catch (err) {
      console.warn('lepeerchat: joining without an identity key', err);
    }
    const reply = await this.#request(type, key ? { ...fields, key } : fields, timeout, retry, internal);
    if (fresh && this.keys && reply?.room?.id && reply?.self?.id) {
      await this.keys.keep(reply.room.id, reply.self.id, fresh).catch((err) => console.debug('lepeerchat: identity key not kept', err));
    }
    return reply;
  }

  /**
   * @param {string} type
   * @param {object} fields
   * @param {number} timeout
   * @param {boolean} retry
   * @param {boolean} internal
   * @param {boolean} [quiet]
   * @returns {Promise<any>}
   */
  #request(type, fields, timeout, retry, internal, quiet = false) {
    return new Promise((resolve, reject) => {
      if (this.#state === 'closed') {
        reject(new ProtocolError('closed', 'the connection is closed'));
        return;
      }
      if (this.#state === 'idle') this.connect().catch(() => {});
      /** @type {PendingRequest} */
      const req = { type, fields, resolve, reject, timer: undefined, retry, internal, quiet };
      req.timer = setTimeout(() => {
        this.#waiting = this.#waiting.filter((r) => r !== req);
        for (const [id, r] of this.#inFlight) if (r === req) this.#inFlight.delete(id);
        reject(new ProtocolError('timeout', 'the server did not answer in time'));
      }, timeout);
      if (this.#state === 'open' || (internal && this.#ws?.readyState === WebSocket.OPEN)) {
        this.#send(req);
      } else {
        this.#waiting.push(req);
      }
    });
  }

  /** @param {PendingRequest} req */
  #send(req) {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      this.#waiting.push(req);
      return;
    }
    const id = this.#nextId++;
    const quiet = req.quiet === true && this.welcome?.features?.includes('quiet') === true;
    ws.send(JSON.stringify({ ...req.fields, type: req.type, id, ...(quiet ? { quiet } : {}) }));
    if (quiet) {
      // Nothing answers it unless it is refused.
      this.#lastQuietId = id;
      clearTimeout(req.timer);
      req.resolve(undefined);
      return;
    }
    req.quietBefore = this.#lastQuietId;
    this.#inFlight.set(id, req);
  }

  /** @param {ConnectionState} state */
  #dial(state) {
    clearTimeout(this.#retryTimer);
    this.#setState(state);
    // What the last socket carried is settled, one way or another.
    this.#settledId = this.#nextId - 1;
    let ws;
    try {
      ws = new WebSocket(this.url, SUBPROTOCOL);
    } catch (err) {
      // A malformed URL: retrying cannot help.
      this.#failAll(new ProtocolError('closed', String(err)));
      this.#setState('closed', { reason: String(err) });
      return;
    }
    this.#ws = ws;
    ws.onmessage = (ev) => this.#receive(ev.data);
    ws.onclose = (ev) => this.#socketGone(ev.code, ev.reason);
    // A socket that opens but never says welcome is as good as dead.
    this.#welcomeTimer = setTimeout(() => this.#abandon('the server did not greet this connection'), this.requestTimeout);
  }

  /** @param {unknown} data */
  #receive(data) {
    this.#lastHeard = Date.now();
    if (typeof data !== 'string') return;
    /** @type {any} */
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') return;
    if (typeof msg.re === 'number') {
      const req = this.#inFlight.get(msg.re);
      if (req) {
        // Answers come in order: everything sent before it is settled.
        this.#settledId = Math.max(this.#settledId, msg.re);
        this.#inFlight.delete(msg.re);
        clearTimeout(req.timer);
        if (msg.type === 'error') req.reject(errorOf(msg));
        else req.resolve(msg);
      } else if (msg.type === 'error') {
        // The refusal of a quiet signal, or a late answer to a request
        // that timed out: it names its message, so it answers no other.
        this.#emit('error', errorOf(msg));
      }
      return;
    }
    switch (msg.type) {
      case 'welcome':
        this.#welcomed(/** @type {Welcome} */ (msg));
        return;
      case 'error': {
        // Errors that could not name their message (rate_limited, too_large,
        // bad_json) still answer, in order, the oldest one unanswered:
        // the oldest request in flight, unless a quiet signal sent before
        // it may be unsettled yet (it may be the one refused; the request
        // then gets its own answer, or times out).
        const err = errorOf(msg);
        const oldest = this.#inFlight.entries().next();
        if (!oldest.done && (oldest.value[1].quietBefore ?? 0) <= this.#settledId) {
          const [id, req] = oldest.value;
          this.#settledId = Math.max(this.#settledId, id);
          this.#inFlight.delete(id);
          clearTimeout(req.timer);
          req.reject(err);
        }
        this.#emit('error', err);
        return;
      }
      case 'session.replaced':
      case 'session.kicked':
        // This connection no longer speaks for the member: never rejoin by
        // itself (two tabs would take the room from each other forever).
        this.#rejoin = null;
        break;
    }
    this.#emit(msg.type, msg);
  }

  /** @param {Welcome} welcome */
  async #welcomed(welcome) {
    clearTimeout(this.#welcomeTimer);
    this.welcome = welcome;
    if (welcome.version !== PROTOCOL_VERSION) {
      const reason = `the server speaks protocol version ${welcome.version}, this page version ${PROTOCOL_VERSION}: reload the page`;
      const ws = this.#ws;
      this.#forgetSocket();
      ws?.close(1000, 'incompatible version');
      this.#failAll(new ProtocolError('closed', reason));
      this.#setState('closed', { reason });
      return;
    }
    this.#emit('welcome', welcome);
    const creds = this.#rejoin;
    const ws = this.#ws;
    if (creds) {
      try {
        const joined = await this.#identified('rejoin', creds, this.requestTimeout, false, true);
        if (this.#ws !== ws) return;
        this.#setOpen();
        this.#emit('rejoined', joined);
      } catch (err) {
        if (this.#ws !== ws) return;
        const perr = /** @type {ProtocolError} */ (err);
        if (FINAL_REJOIN_CODES.has(perr.code)) {
          this.#rejoin = null;
          this.#setOpen();
          this.#emit('rejoinfailed', perr);
        } else {
          // "unavailable", "internal", "timeout": a new socket may fare better.
          this.#abandon(`could not rejoin the room: ${perr.message}`);
        }
      }
      return;
    }
    this.#setOpen();
  }

  #setOpen() {
    this.#attempt = 0;
    this.#setState('open');
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const req of waiting) this.#send(req);
    this.#schedulePing();
  }

  #schedulePing() {
    clearTimeout(this.#pingTimer);
    this.#pingTimer = setTimeout(() => this.#ping(), this.pingInterval);
  }

  // Browsers do not expose WebSocket pings, so a socket whose peer vanished
  // (sleeping laptop, changed network) would look open forever: an
  // application-level ping with a deadline finds out.
  async #ping() {
    if (this.#state !== 'open') return;
    const ws = this.#ws;
    if (Date.now() - this.#lastHeard < this.pingInterval / 2) {
      this.#schedulePing();
      return;
    }
    const sent = Date.now();
    try {
      await this.#request('ping', {}, this.pongTimeout, false, false);
      if (this.#ws === ws) this.#schedulePing();
    } catch (err) {
      if (this.#ws !== ws) return;
      // Dead only if nothing at all came back: a refused ping
      // (rate_limited), or one whose refusal could not be told from a
      // quiet signal's, still shows the socket alive.
      if (/** @type {ProtocolError} */ (err).code === 'timeout' && this.#lastHeard < sent) {
        this.#abandon('the server stopped answering');
      } else {
        this.#schedulePing();
      }
    }
  }

  /**
   * Gives up on the current socket without waiting for its close handshake
   * (which a dead network never completes) and reconnects.
   * @param {string} reason
   */
  #abandon(reason) {
    const ws = this.#ws;
    if (!ws) return;
    this.#forgetSocket();
    try {
      ws.close(4000, 'no answer');
    } catch {
      // Already closing.
    }
    this.#dropped(4000, reason);
  }

  /**
   * @param {number} code
   * @param {string} reason
   */
  #socketGone(code, reason) {
    this.#forgetSocket();
    this.#dropped(code, reason || describeClose(code));
  }

  #forgetSocket() {
    const ws = this.#ws;
    if (ws) {
      ws.onmessage = null;
      ws.onclose = null;
    }
    this.#ws = null;
    clearTimeout(this.#welcomeTimer);
    clearTimeout(this.#pingTimer);
  }

  /**
   * The socket is gone: fail or keep the requests it carried, and schedule
   * the next attempt.
   * @param {number} code
   * @param {string} reason
   */
  #dropped(code, reason) {
    if (this.#state === 'closed') return;
    const cut = new ProtocolError('disconnected', 'the connection to the server was lost');
    for (const req of this.#inFlight.values()) {
      if (req.retry) {
        this.#waiting.push(req);
      } else {
        clearTimeout(req.timer);
        req.reject(cut);
      }
    }
    this.#inFlight.clear();
    const delay = this.#backoff(code);
    this.#attempt++;
    this.#retryTimer = setTimeout(() => this.#dial('reconnecting'), delay);
    this.#setState('reconnecting', { code, reason, retryIn: delay, attempt: this.#attempt });
  }

  /**
   * Delay before the next attempt: exponential with jitter (between half
   * and all of base·2^attempt, capped), so that every client of a
   * restarted server does not come back at the same instant; never less
   * than a floor for refusals that ask for patience.
   * @param {number} code
   * @returns {number}
   */
  #backoff(code) {
    const ceiling = Math.min(this.backoffMax, this.backoffBase * 2 ** Math.min(this.#attempt, 16));
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    let floor = 0;
    if (code === 1008) floor = 5_000; // policy: rate limit, too slow to read
    else if (code === 1013 || code === 1012) floor = 2_000; // try again later, service restart
    return Math.round(Math.max(floor, delay));
  }

  /** @param {ProtocolError} err */
  #failAll(err) {
    for (const req of [...this.#inFlight.values(), ...this.#waiting]) {
      clearTimeout(req.timer);
      req.reject(err);
    }
    this.#inFlight.clear();
    this.#waiting = [];
  }

  /**
   * @param {ConnectionState} state
   * @param {Partial<StateChange>} [info]
   */
  #setState(state, info = {}) {
    const previous = this.#state;
    this.#state = state;
    this.#emit('state', { ...info, state, previous });
  }

  /**
   * @param {string} type
   * @param {unknown} detail
   */
  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // The browser knows when the network comes back: try at once rather than
  // at the end of a long backoff. When it goes away, check the socket now.
  #onOnline = () => this.retryNow();

  #onOffline = () => {
    if (this.#state === 'open') {
      this.#lastHeard = 0;
      this.#ping();
    }
  };

  /** @param {boolean} on */
  #listen(on) {
    if (typeof window === 'undefined' || on === this.#listening) return;
    this.#listening = on;
    if (on) {
      window.addEventListener('online', this.#onOnline);
      window.addEventListener('offline', this.#onOffline);
    } else {
      window.removeEventListener('online', this.#onOnline);
      window.removeEventListener('offline', this.#onOffline);
    }
  }
}

/**
 * @param {any} msg an error message from the server
 * @returns {ProtocolError}
 */
function errorOf(msg) {
  const e = msg && typeof msg.error === 'object' && msg.error ? msg.error : {};
  const err = new ProtocolError(String(e.code ?? 'internal'), String(e.message ?? 'the server refused the request'));
  if (typeof msg.re === 'number') err.re = msg.re;
  return err;
}

/**
 * Words for a WebSocket close code the server gave no reason for.
 * @param {number} code
 * @returns {string}
 */
function describeClose(code) {
  switch (code) {
    case 1000:
      return 'the server closed the connection';
    case 1001:
      return 'the server is restarting';
    case 1006:
      return 'the server cannot be reached';
    case 1008:
      return 'the server refused this connection (too many messages)';
    case 1009:
      return 'a message was too large for the server';
    case 1011:
      return 'the server failed';
    case 1012:
    case 1013:
      return 'the server is busy: trying again shortly';
    default:
      return `the connection closed (code ${code})`;
  }
}
