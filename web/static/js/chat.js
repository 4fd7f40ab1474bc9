// @ts-check
/**
 * @file Text chat over the peers' data channels only: the server never
 * carries a chat message.
 *
 * What a member sees is what its author wrote: every message is signed by
 * its author (an injected ChatSigner, see trust.js) over signedBytes, and
 * verified against the author's key before it is accepted, whether it
 * comes live from its author or in a history handed on by another peer.
 * Whatever does not verify is dropped and counted (Chat.stats), never
 * shown.
 *
 * Order never trusts a peer's clock: each message carries a Lamport
 * timestamp, and messages sort by (timestamp, author id, message id). No
 * peer can poison the clock: a validly signed message is never refused for
 * its timestamp (so no member is refused for a clock someone else pushed),
 * but one message moves our clock by at most ADOPT_JUMP, and the clock
 * never leaves [0, MAX_LAMPORT].
 *
 * Peers already present hand their recent history to each peer whose
 * channel opens; a history is taken only then (within HISTORY_WINDOW_MS),
 * once per opening, entry by entry. Each peer has a budget of messages and volume a second
 * (CHAT_BUDGET); what exceeds it is dropped and counted. Memory is kept
 * per author: when full, the oldest message of the author with the most
 * goes first, so one flooder cannot evict the others. Every field of every
 * message is checked (wire.js) and text is only ever rendered as text
 * nodes and http(s) links.
 *
 * Wire messages (JSON objects on the data channel, see mesh.js and
 * docs/protocol.md, "Data-channel messages"):
 *   {type: "chat.msg", id, lamport, text, time, sig}          live, author = sender
 *   {type: "chat.history", messages: [{id, author, lamport, text, time, sig}]}
 *   {type: "chat.seen", ids: [id…]}                            sent to the author
 */

import { BAD_CHARS, PeerLimiter, isId, isIntIn, isObject, isSig, isText, lengthPrefixed, textLength } from './wire.js';

export { textLength };

/** Longest message, in characters (Unicode code points), enforced on receive too. */
export const MAX_TEXT = 2000;
/** How many recent messages are handed to a peer whose channel opens. */
export const HISTORY_LIMIT = 200;
/** How many messages are kept in memory. */
export const KEEP_LIMIT = 1000;
/** The largest Lamport timestamp: the clock stops here, far below 2^53. */
export const MAX_LAMPORT = 2 ** 52;
/**
 * How far one accepted message may move our clock: reaching MAX_LAMPORT
 * takes 2^32 messages, years at a peer's budget.
 */
export const ADOPT_JUMP = 2 ** 20;
/**
 * What one peer may send of chat.msg and chat.seen: 10 messages a second
 * (40 at once), 40,000 UTF-16 code units a second (160,000 at once). A
 * history is bounded apart: HISTORY_LIMIT entries per opening.
 * @type {import('./wire.js').PeerBudget}
 */
export const CHAT_BUDGET = { messages: 10, messageBurst: 40, units: 40_000, unitBurst: 160_000 };

/** The domain separation tag of contract B, first of the signed fields. */
const SIGNED_TAG = 'lepeerchat.chat.v1';
/** Largest history batch, in UTF-16 code units of JSON, well under a data channel's message size. */
const HISTORY_BATCH = 60_000;
const MAX_SEEN_IDS = 200;
/**
 * How long after a channel opens its peer may still hand a history: a
 * history comes at once, and a window left open would let a peer bring
 * old messages in as history whenever it likes.
 */
export const HISTORY_WINDOW_MS = 15_000;
/** How long acknowledgements are gathered before one chat.seen per author goes. */
const SEEN_DELAY_MS = 200;

/**
 * Signs our messages and verifies the others' (trust.js implements it with
 * each member's identity key, bound by the server).
 * @typedef {{
 *   sign(bytes: Uint8Array): Promise<string>,
 *   verify(author: string, bytes: Uint8Array, sig: string): Promise<boolean>,
 * }} ChatSigner
 *   sign: a raw r‖s ECDSA P-256 / SHA-256 signature, base64url without
 *   padding; verify: false when the author's key is unknown.
 */

/**
 * One chat message.
 * @typedef {object} ChatMessage
 * @property {string} id unique (random) id
 * @property {string} author the author's member id
 * @property {number} lamport Lamport timestamp
 * @property {string} text the text (may contain newlines)
 * @property {number} time the author's clock when sent (ms since the epoch), as signed: for display only (when a Date can show it), never for order
 * @property {string} sig the author's signature ("" while our own is being made)
 * @property {boolean} own written by us: our member id, and our key's signature
 * @property {string} relayedBy the peer that handed it to us when that is not its author (history), else ""
 * @property {Set<string>} seenBy the peers that acknowledged it (our own messages only)
 */

/**
 * What the chat needs from the mesh (a Mesh satisfies it).
 * @typedef {{ send(id: string, data: { type: string } & Record<string, unknown>): boolean, broadcast(data: { type: string } & Record<string, unknown>): string[] }} ChatTransport
 */

/**
 * Event details.
 * @typedef {{ message: ChatMessage, before: string | null }} ChatMessageDetail
 *   a new message; insert it before the message with key `before` (messageKey; null: at the end)
 * @typedef {{ message: ChatMessage, by: string }} ChatSeenDetail
 * @typedef {{ keys: string[] }} ChatRemovedDetail messages forgotten, by messageKey
 * @typedef {{ message: ChatMessage, error: unknown }} ChatFailedDetail one of ours could not be signed: not sent, and removed
 * @typedef {{ message: ChatMessage }} ChatUpdatedDetail a message shown as relayed came from its author too
 * @typedef {{
 *   message: CustomEvent<ChatMessageDetail>,
 *   seen: CustomEvent<ChatSeenDetail>,
 *   removed: CustomEvent<ChatRemovedDetail>,
 *   failed: CustomEvent<ChatFailedDetail>,
 *   updated: CustomEvent<ChatUpdatedDetail>,
 * }} ChatEventMap
 */

/**
 * What the chat dropped, by reason.
 * @typedef {object} ChatDrops
 * @property {number} bad a malformed message or entry (a field of the wrong type, range or length; an unknown chat type)
 * @property {number} unverified a signature that does not verify against the author's key (or no key is known)
 * @property {number} rate over the peer's budget of messages or volume
 * @property {number} history a history outside its window (not just after the channel opened, or more entries than one history holds)
 */

/**
 * Cleans a text typed by the user: newlines normalised, control characters
 * removed, blank lines around it trimmed.
 * @param {string} text
 */
export function cleanText(text) {
	return text.replace(/\r\n?/g, '\n').replace(BAD_CHARS, '').replace(/^(?:[ \t]*\n)+/, '').trimEnd();
}

/**
 * Total order of messages: Lamport timestamp, then author id, then message id.
 * @param {{ lamport: number, author: string, id: string }} a
 * @param {{ lamport: number, author: string, id: string }} b
 */
export function compareMessages(a, b) {
	if (a.lamport !== b.lamport) {
		return a.lamport - b.lamport;
	}
	if (a.author !== b.author) {
		return a.author < b.author ? -1 : 1;
	}
	return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * The bytes a chat message's signature covers (contract B): these fields,
 * length-prefixed (wire.js), in this order: the tag "lepeerchat.chat.v1",
 * the room id, the author, the message id, the Lamport timestamp and the
 * time in decimal, the text.
 * @param {string} roomId
 * @param {{ author: string, id: string, lamport: number, time: number, text: string }} m
 * @returns {Uint8Array}
 */
export function signedBytes(roomId, { author, id, lamport, time, text }) {
	return lengthPrefixed([SIGNED_TAG, roomId, author, id, String(lamport), String(time), text]);
}

/**
 * What tells a message from every other: its author and its id. A message
 * id is the author's choice, so another member may reuse it for a message
 * of its own; it never stands for the author's.
 * @param {{ author: string, id: string }} m
 */
export function messageKey({ author, id }) {
	return `${author} ${id}`;
}

/**
 * Whether two messages of the same key carry the same signed content (the
 * signature itself may differ: an ECDSA signature has more than one form).
 * @param {ChatMessage} a
 * @param {ChatMessage} b
 */
function sameContent(a, b) {
	return a.lamport === b.lamport && a.time === b.time && a.text === b.text;
}

/**
 * Which message goes first when a list must shrink: the oldest of the
 * author with the most messages in it (the first such author in order,
 * on a tie), so that one prolific author cannot push the others out.
 * @param {ChatMessage[]} list sorted by compareMessages
 * @param {Map<string, number>} counts messages per author in list
 * @returns {number} an index into list
 */
function evictionIndex(list, counts) {
	let most = '';
	let n = 0;
	for (const [author, c] of counts) {
		if (c > n) {
			most = author;
			n = c;
		}
	}
	return list.findIndex((m) => m.author === most);
}

/**
 * @param {Map<string, number>} counts
 * @param {string} author
 * @param {number} d
 */
function count(counts, author, d) {
	const n = (counts.get(author) ?? 0) + d;
	if (n > 0) {
		counts.set(author, n);
	} else {
		counts.delete(author);
	}
}

/** @returns {string} 128 random bits, base64url */
function newId() {
	const b = crypto.getRandomValues(new Uint8Array(16));
	return btoa(String.fromCharCode(...b)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/**
 * The chat of one member in one room.
 */
export class Chat extends EventTarget {
	/**
	 * @param {object} options
	 * @param {string} options.selfId our member id
	 * @param {string} options.roomId the room's id (signed with every message)
	 * @param {ChatSigner} options.signer
	 * @param {ChatTransport} options.transport
	 * @param {number} [options.maxLength] characters per message (default 2000)
	 * @param {number} [options.historyLimit] messages handed to a new peer, and taken from one (default 200)
	 * @param {number} [options.keep] messages kept in memory (default 1000)
	 * @param {boolean} [options.autoSeen] acknowledge live messages as soon as they are accepted (default true); otherwise call markSeen
	 * @param {import('./wire.js').PeerBudget} [options.budget] what one peer may send (default CHAT_BUDGET)
	 * @param {() => number} [options.now] the clock of the budgets and history windows, in ms (tests give their own)
	 */
	constructor({ selfId, roomId, signer, transport, maxLength = MAX_TEXT, historyLimit = HISTORY_LIMIT, keep = KEEP_LIMIT, autoSeen = true, budget = CHAT_BUDGET, now = () => performance.now() }) {
		super();
		this.selfId = selfId;
		this.roomId = roomId;
		this.signer = signer;
		this.transport = transport;
		this.maxLength = maxLength;
		this.historyLimit = historyLimit;
		this.keep = Math.max(keep, historyLimit);
		this.autoSeen = autoSeen;
		/** The Lamport clock: past every timestamp sent, moved towards each accepted (see accept). */
		this.clock = 0;
		/** @type {ChatMessage[]} sorted by compareMessages */
		this.messages = [];
		/** @type {Map<string, ChatMessage>} by messageKey */
		this.byKey = new Map();
		/** @type {Map<string, number>} messages kept, per author */
		this.perAuthor = new Map();
		/** What was accepted, and what was dropped and why: for tests and a debug view. */
		this.stats = { accepted: 0, dropped: /** @type {ChatDrops} */ ({ bad: 0, unverified: 0, rate: 0, history: 0 }) };
		this.now = now;
		this.limiter = new PeerLimiter(budget, now);
		/**
		 * @type {Map<string, { left: number, until: number }>} peer → history
		 * entries it may still hand us since its channel opened, and until when
		 */
		this.historyWindow = new Map();
		/** @type {Map<string, ChatMessage>} the messages being verified, by messageKey and signature */
		this.verifying = new Map();
		/** @type {Set<Promise<void>>} */
		this.inFlight = new Set();
		/** Our messages, signed and sent one after the other. */
		this.outgoing = Promise.resolve();
		/** @type {Map<string, Set<string>>} author → ids to acknowledge */
		this.seenQueue = new Map();
		/** @type {ReturnType<typeof setTimeout> | undefined} */
		this.seenTimer = undefined;
	}

	/**
	 * @template {keyof ChatEventMap} K
	 * @param {K} type
	 * @param {(ev: ChatEventMap[K]) => void} listener
	 * @param {AddEventListenerOptions} [options]
	 */
	on(type, listener, options) {
		this.addEventListener(type, /** @type {EventListener} */ (listener), options);
	}

	/**
	 * @template {keyof ChatEventMap} K
	 * @param {K} type
	 * @param {ChatEventMap[K]['detail']} detail
	 */
	emit(type, detail) {
		this.dispatchEvent(new CustomEvent(type, { detail }));
	}

	/**
	 * Shows a message at once and sends it, signed, to every peer whose
	 * channel is open (the others get it with the history when their
	 * channel opens). Our messages are signed and sent in the order written.
	 * @param {string} text as typed; cleaned first
	 * @returns {ChatMessage}
	 * @throws {RangeError} when the text is blank or too long, or the clock is at its end
	 */
	send(text) {
		const clean = cleanText(text);
		if (clean.trim() === '') {
			throw new RangeError('the message is empty');
		}
		if (textLength(clean) > this.maxLength) {
			throw new RangeError(`the message is longer than ${this.maxLength} characters`);
		}
		if (this.clock >= MAX_LAMPORT) {
			throw new RangeError('the chat has reached its last timestamp');
		}
		this.clock++;
		/** @type {ChatMessage} */
		const message = { id: newId(), author: this.selfId, lamport: this.clock, text: clean, time: Date.now(), sig: '', own: true, relayedBy: '', seenBy: new Set() };
		this.insert(message);
		this.outgoing = this.outgoing.then(async () => {
			try {
				message.sig = await this.signer.sign(signedBytes(this.roomId, message));
			} catch (error) {
				this.forget([message]);
				this.emit('failed', { message, error });
				return;
			}
			const { id, lamport, text: t, time, sig } = message;
			this.transport.broadcast({ type: 'chat.msg', id, lamport, text: t, time, sig });
		});
		return message;
	}

	/**
	 * Opens the peer's history window and hands it our recent history (wire
	 * to the mesh's "channelopen"). The history handed is the last
	 * historyLimit signed messages, chosen per author as memory is.
	 * @param {string} id
	 */
	peerOpened(id) {
		this.historyWindow.set(id, { left: this.historyLimit, until: this.now() + HISTORY_WINDOW_MS });
		const recent = this.messages.filter((m) => m.sig !== '');
		const counts = new Map();
		for (const m of recent) {
			count(counts, m.author, 1);
		}
		while (recent.length > this.historyLimit) {
			const [gone] = recent.splice(evictionIndex(recent, counts), 1);
			count(counts, gone.author, -1);
		}
		/** @type {object[]} */
		let batch = [];
		let size = 0;
		const flush = () => {
			if (batch.length > 0) {
				this.transport.send(id, { type: 'chat.history', messages: batch });
				batch = [];
				size = 0;
			}
		};
		for (const m of recent) {
			const item = { id: m.id, author: m.author, lamport: m.lamport, text: m.text, time: m.time, sig: m.sig };
			const len = JSON.stringify(item).length;
			if (size + len > HISTORY_BATCH) {
				flush();
			}
			batch.push(item);
			size += len;
		}
		flush();
	}

	/**
	 * Forgets a peer that left: its budget and its history window.
	 * @param {string} id
	 */
	peerRemoved(id) {
		this.limiter.forget(id);
		this.historyWindow.delete(id);
	}

	/**
	 * Acknowledges messages as seen to their authors (when autoSeen is off,
	 * call it as messages are shown). Acknowledgements are gathered for a
	 * short while and go as one chat.seen per author.
	 * @param {Iterable<string>} keys messageKey of each
	 */
	markSeen(keys) {
		for (const key of keys) {
			const m = this.byKey.get(key);
			if (m && !m.own) {
				const set = this.seenQueue.get(m.author) ?? new Set();
				set.add(m.id);
				this.seenQueue.set(m.author, set);
			}
		}
		if (this.seenQueue.size > 0 && this.seenTimer === undefined) {
			this.seenTimer = setTimeout(() => this.flushSeen(), SEEN_DELAY_MS);
		}
	}

	/** Sends the acknowledgements gathered, one chat.seen per author (split past MAX_SEEN_IDS). */
	flushSeen() {
		clearTimeout(this.seenTimer);
		this.seenTimer = undefined;
		for (const [author, set] of this.seenQueue) {
			const list = [...set];
			for (let i = 0; i < list.length; i += MAX_SEEN_IDS) {
				this.transport.send(author, { type: 'chat.seen', ids: list.slice(i, i + MAX_SEEN_IDS) });
			}
		}
		this.seenQueue.clear();
	}

	/**
	 * Resolves once every message received so far has been accepted or
	 * dropped (signatures are checked asynchronously).
	 * @returns {Promise<void>}
	 */
	async idle() {
		while (this.inFlight.size > 0) {
			await Promise.all(this.inFlight);
		}
	}

	/**
	 * Handles a data channel message from a peer (wire to the mesh's
	 * "message"). Returns whether it was a chat message. What is invalid,
	 * over budget, out of bounds or out of its time is dropped and counted;
	 * nothing here throws on what a peer sends.
	 * @param {string} from
	 * @param {unknown} data
	 * @returns {boolean}
	 */
	handleMessage(from, data) {
		if (!isObject(data) || typeof data.type !== 'string' || !data.type.startsWith('chat.')) {
			return false;
		}
		if (!isId(from) || from === this.selfId) {
			return true;
		}
		const drops = this.stats.dropped;
		if (data.type === 'chat.history') {
			this.takeHistory(from, data.messages);
			return true;
		}
		// Anything else the peer sends ends the history it may hand us.
		this.historyWindow.delete(from);
		switch (data.type) {
		case 'chat.msg': {
			if (typeof data.text !== 'string') {
				drops.bad++;
			} else if (!this.limiter.allow(from, 128 + data.text.length)) {
				drops.rate++;
			} else {
				this.receive(from, { ...data, author: from }, true);
			}
			break;
		}
		case 'chat.seen':
			if (!Array.isArray(data.ids) || data.ids.length > MAX_SEEN_IDS) {
				drops.bad++;
			} else if (!this.limiter.allow(from, 16 + 72 * data.ids.length)) {
				drops.rate++;
			} else {
				this.takeSeen(from, data.ids);
			}
			break;
		default:
			drops.bad++;
		}
		return true;
	}

	/**
	 * Takes a history from a peer, if its window is open (opened less than
	 * HISTORY_WINDOW_MS ago): up to what the window has left, each entry
	 * checked on its own.
	 * @param {string} from
	 * @param {unknown} entries
	 */
	takeHistory(from, entries) {
		const drops = this.stats.dropped;
		const opened = this.historyWindow.get(from);
		if (opened === undefined || this.now() > opened.until) {
			this.historyWindow.delete(from);
			drops.history++;
			return;
		}
		const { left } = opened;
		if (!Array.isArray(entries)) {
			drops.bad++;
			return;
		}
		const taken = entries.slice(0, left);
		drops.history += entries.length - taken.length;
		opened.left = left - taken.length;
		for (const item of taken) {
			this.receive(from, item, false);
		}
	}

	/**
	 * @param {string} from
	 * @param {unknown[]} ids
	 */
	takeSeen(from, ids) {
		for (const id of ids) {
			const m = typeof id === 'string' ? this.byKey.get(messageKey({ author: this.selfId, id })) : undefined;
			if (m && m.own && !m.seenBy.has(from)) {
				m.seenBy.add(from);
				this.emit('seen', { message: m, by: from });
			}
		}
	}

	/**
	 * Checks one message received from `from` (live: from its author), has
	 * its signature verified, and accepts it if it verifies.
	 * @param {string} from
	 * @param {unknown} raw
	 * @param {boolean} live
	 */
	receive(from, raw, live) {
		const drops = this.stats.dropped;
		const m = this.parse(raw, from);
		if (!m) {
			drops.bad++;
			return;
		}
		const key = `${messageKey(m)} ${m.sig}`;
		const copy = this.byKey.get(messageKey(m)) ?? this.verifying.get(key);
		if (copy) {
			// Known, or on its way. Its author handing it too means it is not
			// only relayed: at once for the same signature, after verifying
			// for another one over the same content (accept clears it).
			if (!copy.relayedBy || m.relayedBy || !sameContent(copy, m)) {
				return;
			}
			if (copy.sig === m.sig) {
				this.unrelay(copy);
				return;
			}
		}
		this.verifying.set(key, m);
		const done = (async () => {
			let ok = false;
			try {
				ok = await this.signer.verify(m.author, signedBytes(this.roomId, m), m.sig);
			} catch {
				ok = false;
			}
			this.verifying.delete(key);
			if (!ok) {
				drops.unverified++;
				return;
			}
			this.accept(m, live ? from : '');
		})();
		this.inFlight.add(done);
		done.finally(() => this.inFlight.delete(done));
	}

	/**
	 * Marks a message as handed by its author too, no longer only relayed.
	 * @param {ChatMessage} m kept or being verified
	 */
	unrelay(m) {
		m.relayedBy = '';
		if (this.byKey.get(messageKey(m)) === m) {
			this.emit('updated', { message: m });
		}
	}

	/**
	 * Checks the fields of one message received from `from` and builds it,
	 * or returns null. `own` is set on acceptance, once the signature has
	 * verified against our own key.
	 * @param {unknown} raw
	 * @param {string} from
	 * @returns {ChatMessage | null}
	 */
	parse(raw, from) {
		if (!isObject(raw)) {
			return null;
		}
		const { id, author, lamport, text, time, sig } = raw;
		// Any safe integer is a time the signature covers (its decimal
		// form); the view shows only one a Date can hold.
		if (!isId(id) || !isId(author) || !isIntIn(lamport, 1, MAX_LAMPORT) || !isText(text, this.maxLength) ||
			!isIntIn(time, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER) || !isSig(sig)) {
			return null;
		}
		return { id, author, lamport, text, time, sig, own: false, relayedBy: author === from ? '' : from, seenBy: new Set() };
	}

	/**
	 * Keeps a verified message unless a copy got there first (then a copy
	 * from its author of what was only relayed unmarks it); advances the
	 * clock towards its timestamp, by at most ADOPT_JUMP; acknowledges a
	 * live one.
	 * @param {ChatMessage} m
	 * @param {string} liveFrom the peer it came live from, or ""
	 */
	accept(m, liveFrom) {
		const kept = this.byKey.get(messageKey(m));
		if (kept) {
			if (kept.relayedBy && !m.relayedBy && sameContent(kept, m)) {
				this.unrelay(kept);
			}
			return;
		}
		m.own = m.author === this.selfId;
		this.clock = Math.min(MAX_LAMPORT, Math.max(this.clock, Math.min(m.lamport, this.clock + ADOPT_JUMP)));
		this.stats.accepted++;
		this.insert(m);
		if (liveFrom && this.autoSeen && this.byKey.has(messageKey(m))) {
			this.markSeen([messageKey(m)]);
		}
	}

	/**
	 * Inserts a message in order; when more than `keep` are kept, forgets
	 * the oldest of the author with the most.
	 * @param {ChatMessage} m
	 */
	insert(m) {
		const list = this.messages;
		let lo = 0;
		let hi = list.length;
		while (lo < hi) {
			const mid = (lo + hi) >> 1;
			if (compareMessages(list[mid], m) < 0) {
				lo = mid + 1;
			} else {
				hi = mid;
			}
		}
		list.splice(lo, 0, m);
		this.byKey.set(messageKey(m), m);
		count(this.perAuthor, m.author, 1);
		const before = lo + 1 < list.length ? messageKey(list[lo + 1]) : null;
		this.emit('message', { message: m, before });
		if (list.length > this.keep) {
			this.forget([list[evictionIndex(list, this.perAuthor)]]);
		}
	}

	/**
	 * Forgets messages.
	 * @param {ChatMessage[]} gone
	 */
	forget(gone) {
		for (const g of gone) {
			const i = this.messages.indexOf(g);
			if (i >= 0) {
				this.messages.splice(i, 1);
				this.byKey.delete(messageKey(g));
				count(this.perAuthor, g.author, -1);
			}
		}
		this.emit('removed', { keys: gone.map(messageKey) });
	}
}

// ---- safe rendering ----------------------------------------------------

const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;

/**
 * The scripts whose letters a host name may hold; a name with letters of
 * two of them (or of one and of none) mixes scripts. Han, Hiragana and
 * Katakana are written together, as one.
 */
const SCRIPTS = [
	/\p{Script=Latin}/u, /\p{Script=Cyrillic}/u, /\p{Script=Greek}/u, /\p{Script=Armenian}/u, /\p{Script=Georgian}/u,
	/\p{Script=Hebrew}/u, /\p{Script=Arabic}/u, /\p{Script=Devanagari}/u, /\p{Script=Bengali}/u, /\p{Script=Tamil}/u,
	/\p{Script=Thai}/u, /\p{Script=Hangul}/u, /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}]/u,
];

/**
 * Whether a host name, as written, holds letters of more than one script.
 * @param {string} host
 */
export function mixesScripts(host) {
	let found = 0;
	for (const ch of host) {
		if (!/\p{L}/u.test(ch)) {
			continue;
		}
		const i = SCRIPTS.findIndex((re) => re.test(ch));
		const bit = i < 0 ? 1 << SCRIPTS.length : 1 << i;
		found |= bit;
		if (found & (found - 1)) {
			return true;
		}
	}
	return false;
}

/**
 * A link of a text.
 * @typedef {{ text: string, href?: string, host?: string }} TextPart
 *   href: where it leads (http(s), without user information); host: the
 *   host it really leads to, set when the text does not show it plainly
 *   (user information before the host, a name that mixes scripts, a host
 *   written differently from what the URL parser makes of it). A mixed name
 *   is given as the parser gives it: in punycode.
 */

/**
 * Splits a text into plain parts and http(s) links. Pure.
 * @param {string} text
 * @returns {TextPart[]}
 */
export function splitLinks(text) {
	/** @type {TextPart[]} */
	const parts = [];
	let last = 0;
	URL_RE.lastIndex = 0;
	for (let m = URL_RE.exec(text); m; m = URL_RE.exec(text)) {
		const url = trimUrl(m[0]);
		const start = m.index;
		const end = start + url.length;
		URL_RE.lastIndex = end;
		/** @type {URL | null} */
		let parsed = null;
		try {
			parsed = new URL(url);
		} catch {
			parsed = null;
		}
		if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') || !parsed.hostname) {
			continue;
		}
		if (start > last) {
			parts.push({ text: text.slice(last, start) });
		}
		const plain = showsHost(url, parsed);
		parsed.username = '';
		parsed.password = '';
		parts.push(plain ? { text: url, href: parsed.href } : { text: url, href: parsed.href, host: parsed.host });
		last = end;
	}
	if (last < text.length) {
		parts.push({ text: text.slice(last) });
	}
	return parts;
}

/**
 * Whether a URL as written shows the host it leads to: no user
 * information, and the host as written is the parser's host (the same
 * letters, or a name of letters in one script that the parser maps to it
 * unchanged but for its encoding).
 * @param {string} url as written, http(s)://…
 * @param {URL} parsed
 */
function showsHost(url, parsed) {
	if (parsed.username !== '' || parsed.password !== '') {
		return false;
	}
	// The authority as written: after "//", up to the path, query or
	// fragment (the parser takes a backslash for a slash too). It has no
	// "@": there is no user information.
	const rest = url.slice(url.indexOf('//') + 2);
	const authority = rest.slice(0, rest.search(/[/?#\\]|$/));
	if (authority.includes('@')) {
		return false;
	}
	const written = authority.startsWith('[') ? authority.slice(0, authority.indexOf(']') + 1) : authority.replace(/:\d*$/, '');
	if (/^[\x20-\x7e]*$/.test(written)) {
		return written.toLowerCase() === parsed.hostname;
	}
	// Beyond ASCII, only letters (and their marks) as the parser keeps
	// them: a full-width or ideographic dot, a look-alike digit or a
	// full-width letter is mapped by the parser to another character than
	// the one shown.
	if (!/^(?:[\x20-\x7e]|\p{L}|\p{M})*$/u.test(written) || written.normalize('NFKC') !== written) {
		return false;
	}
	let host = '';
	try {
		host = new URL(`http://${written}/`).hostname;
	} catch {
		return false;
	}
	return host === parsed.hostname && !mixesScripts(written);
}

/**
 * Drops the punctuation that ends a sentence rather than a URL, and closing
 * brackets that have no opening one inside the URL.
 * @param {string} url
 */
function trimUrl(url) {
	for (;;) {
		const c = url.at(-1);
		if (c === undefined) {
			return url;
		}
		if ('.,;:!?\'"»’”'.includes(c)) {
			url = url.slice(0, -1);
			continue;
		}
		const pairs = /** @type {Record<string, string>} */ ({ ')': '(', ']': '[', '}': '{', '>': '<' });
		const open = pairs[c];
		if (open && occurrences(url, open) < occurrences(url, c)) {
			url = url.slice(0, -1);
			continue;
		}
		return url;
	}
}

/**
 * @param {string} s
 * @param {string} c
 */
function occurrences(s, c) {
	return s.split(c).length - 1;
}

/**
 * Renders a text as DOM nodes: text nodes, and `<a>` elements for http(s)
 * URLs that open in a new tab without a referrer or an opener. A link
 * whose text does not show where it leads carries a badge with its real
 * host (class "link-host"). Never parses HTML. Newlines stay in the text
 * nodes (show them with CSS `white-space: pre-wrap`).
 * @param {string} text
 * @param {Document} [doc]
 * @returns {DocumentFragment}
 */
export function renderText(text, doc = document) {
	const frag = doc.createDocumentFragment();
	for (const part of splitLinks(text)) {
		if (part.href) {
			const a = doc.createElement('a');
			a.href = part.href;
			a.rel = 'noopener noreferrer';
			a.target = '_blank';
			a.referrerPolicy = 'no-referrer';
			a.textContent = part.text;
			if (part.host) {
				const badge = doc.createElement('span');
				badge.className = 'link-host';
				badge.textContent = part.host;
				badge.title = `This link leads to ${part.host}`;
				a.append(badge);
			}
			frag.append(a);
		} else {
			frag.append(doc.createTextNode(part.text));
		}
	}
	return frag;
}
