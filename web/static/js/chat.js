// @ts-check
/**
 * @file Text chat over the peers' data channels only: the server never
 * carries a chat message.
 *
 * Order never trusts a peer's clock: each message carries a Lamport
 * timestamp, and messages sort by (timestamp, author id, message id). Peers
 * already present hand their recent history to each peer whose channel
 * opens; the receiver merges it by message id, so nothing is duplicated and
 * messages missed while disconnected are filled in. Every incoming message is
 * checked (peers are untrusted) and text is only ever rendered as text nodes
 * and http(s) links.
 *
 * Wire messages (JSON objects on the data channel, see mesh.js):
 *   {type: "chat.msg", id, lamport, text, time}          live, author = sender
 *   {type: "chat.history", messages: [{id, author, lamport, text, time}]}
 *   {type: "chat.seen", ids: [id…]}                       sent to the author
 */

/** Longest message, in characters (Unicode code points), enforced on receive too. */
export const MAX_TEXT = 2000;
/** How many recent messages are handed to a peer whose channel opens. */
export const HISTORY_LIMIT = 200;
/** How many messages are kept in memory. */
export const KEEP_LIMIT = 1000;

/** Largest history batch, in UTF-16 code units of JSON, well under a data channel's message size. */
const HISTORY_BATCH = 60_000;
const MAX_SEEN_IDS = 200;
const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
// C0 and C1 controls other than tab and newline; the bidi overrides and
// isolates, which can make text read differently from what it is.
// eslint-disable-next-line no-control-regex
const BAD_CHARS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/**
 * One chat message.
 * @typedef {object} ChatMessage
 * @property {string} id unique (random) id
 * @property {string} author the author's member id
 * @property {number} lamport Lamport timestamp
 * @property {string} text the text (may contain newlines)
 * @property {number} time the author's clock when sent (ms since the epoch): for display only, never for order
 * @property {boolean} own written by us
 * @property {boolean} relayed received from a peer other than its author (history)
 * @property {Set<string>} seenBy the peers that acknowledged it (our own messages only)
 */

/**
 * What the chat needs from the mesh (a Mesh satisfies it).
 * @typedef {{ send(id: string, data: { type: string } & Record<string, unknown>): boolean, broadcast(data: { type: string } & Record<string, unknown>): string[] }} ChatTransport
 */

/**
 * Event details.
 * @typedef {{ message: ChatMessage, before: string | null }} ChatMessageDetail
 *   a new message; insert it before the message with id `before` (null: at the end)
 * @typedef {{ message: ChatMessage, by: string }} ChatSeenDetail
 * @typedef {{ ids: string[] }} ChatRemovedDetail the oldest messages, forgotten
 * @typedef {{
 *   message: CustomEvent<ChatMessageDetail>,
 *   seen: CustomEvent<ChatSeenDetail>,
 *   removed: CustomEvent<ChatRemovedDetail>,
 * }} ChatEventMap
 */

/**
 * The length of a text as the limit counts it: Unicode code points.
 * @param {string} text
 */
export function textLength(text) {
	let n = 0;
	for (const _ of text) {
		n++;
	}
	return n;
}

/**
 * Cleans a text typed by the user: newlines normalised, control characters
 * removed, blank lines around it trimmed.
 * @param {string} text
 */
export function cleanText(text) {
	return text.replace(/\r\n?/g, '\n').replace(BAD_CHARS, '').replace(/^(?:[ \t]*\n)+/, '').trimEnd();
}

/**
 * Whether a text is acceptable as a message: non-blank, within the limit,
 * no control characters (other than newline and tab).
 * @param {unknown} text
 * @param {number} [max]
 * @returns {text is string}
 */
export function validText(text, max = MAX_TEXT) {
	if (typeof text !== 'string' || text.length === 0 || text.length > max * 2) {
		return false;
	}
	BAD_CHARS.lastIndex = 0;
	return !BAD_CHARS.test(text) && text.trim() !== '' && textLength(text) <= max;
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

/** @returns {string} 128 random bits, base64url */
function newId() {
	const b = crypto.getRandomValues(new Uint8Array(16));
	return btoa(String.fromCharCode(...b)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/**
 * @param {unknown} v
 * @returns {v is Record<string, unknown>}
 */
function isObject(v) {
	return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * @param {unknown} v
 * @returns {v is number}
 */
function validLamport(v) {
	return Number.isSafeInteger(v) && /** @type {number} */ (v) > 0;
}

/**
 * The chat of one member in one room.
 */
export class Chat extends EventTarget {
	/**
	 * @param {object} options
	 * @param {string} options.selfId our member id
	 * @param {ChatTransport} options.transport
	 * @param {number} [options.maxLength] characters per message (default 2000)
	 * @param {number} [options.historyLimit] messages handed to a new peer (default 200)
	 * @param {number} [options.keep] messages kept in memory (default 1000)
	 * @param {boolean} [options.autoSeen] acknowledge live messages as soon as they arrive (default true); otherwise call markSeen
	 */
	constructor({ selfId, transport, maxLength = MAX_TEXT, historyLimit = HISTORY_LIMIT, keep = KEEP_LIMIT, autoSeen = true }) {
		super();
		this.selfId = selfId;
		this.transport = transport;
		this.maxLength = maxLength;
		this.historyLimit = historyLimit;
		this.keep = Math.max(keep, historyLimit);
		this.autoSeen = autoSeen;
		/** The Lamport clock: the largest timestamp seen or sent. */
		this.clock = 0;
		/** @type {ChatMessage[]} sorted by compareMessages */
		this.messages = [];
		/** @type {Map<string, ChatMessage>} */
		this.byId = new Map();
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
	 * Sends a message to every peer whose channel is open (the others get
	 * it with the history when their channel opens).
	 * @param {string} text as typed; cleaned first
	 * @returns {ChatMessage}
	 * @throws {RangeError} when the text is blank or too long
	 */
	send(text) {
		const clean = cleanText(text);
		if (clean.trim() === '') {
			throw new RangeError('the message is empty');
		}
		if (textLength(clean) > this.maxLength) {
			throw new RangeError(`the message is longer than ${this.maxLength} characters`);
		}
		this.clock++;
		/** @type {ChatMessage} */
		const message = { id: newId(), author: this.selfId, lamport: this.clock, text: clean, time: Date.now(), own: true, relayed: false, seenBy: new Set() };
		this.insert(message);
		this.transport.broadcast({ type: 'chat.msg', id: message.id, lamport: message.lamport, text: message.text, time: message.time });
		return message;
	}

	/**
	 * Hands the recent history to a peer whose channel just opened (wire to
	 * the mesh's "channelopen").
	 * @param {string} id
	 */
	peerOpened(id) {
		const recent = this.messages.slice(-this.historyLimit);
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
			const item = { id: m.id, author: m.author, lamport: m.lamport, text: m.text, time: m.time };
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
	 * Acknowledges messages as seen to their authors (when autoSeen is off,
	 * call it as messages are shown).
	 * @param {Iterable<string>} ids
	 */
	markSeen(ids) {
		/** @type {Map<string, string[]>} */
		const byAuthor = new Map();
		for (const id of ids) {
			const m = this.byId.get(id);
			if (m && !m.own) {
				const list = byAuthor.get(m.author) ?? [];
				list.push(id);
				byAuthor.set(m.author, list);
			}
		}
		for (const [author, list] of byAuthor) {
			for (let i = 0; i < list.length; i += MAX_SEEN_IDS) {
				this.transport.send(author, { type: 'chat.seen', ids: list.slice(i, i + MAX_SEEN_IDS) });
			}
		}
	}

	/**
	 * Handles a data channel message from a peer (wire to the mesh's
	 * "message"). Returns whether it was a chat message. Invalid messages are
	 * dropped.
	 * @param {string} from
	 * @param {unknown} data
	 * @returns {boolean}
	 */
	handleMessage(from, data) {
		if (!isObject(data) || typeof data.type !== 'string' || !data.type.startsWith('chat.')) {
			return false;
		}
		if (typeof from !== 'string' || !ID_RE.test(from) || from === this.selfId) {
			return true;
		}
		switch (data.type) {
		case 'chat.msg': {
			const m = this.parse({ ...data, author: from }, from);
			if (m && this.merge(m) && this.autoSeen) {
				this.transport.send(from, { type: 'chat.seen', ids: [m.id] });
			}
			break;
		}
		case 'chat.history':
			if (Array.isArray(data.messages)) {
				for (const item of data.messages.slice(0, this.historyLimit)) {
					const m = this.parse(item, from);
					if (m) {
						this.merge(m);
					}
				}
			}
			break;
		case 'chat.seen':
			if (Array.isArray(data.ids)) {
				for (const id of data.ids.slice(0, MAX_SEEN_IDS)) {
					const m = typeof id === 'string' ? this.byId.get(id) : undefined;
					if (m && m.own && !m.seenBy.has(from)) {
						m.seenBy.add(from);
						this.emit('seen', { message: m, by: from });
					}
				}
			}
			break;
		}
		return true;
	}

	/**
	 * Checks one message received from `from` and builds it, or returns null.
	 * @param {unknown} raw
	 * @param {string} from
	 * @returns {ChatMessage | null}
	 */
	parse(raw, from) {
		if (!isObject(raw)) {
			return null;
		}
		const { id, author, lamport, text, time } = raw;
		if (typeof id !== 'string' || !ID_RE.test(id) || typeof author !== 'string' || !ID_RE.test(author) ||
			!validLamport(lamport) || !validText(text, this.maxLength)) {
			return null;
		}
		return {
			id, author, lamport, text,
			time: typeof time === 'number' && Number.isFinite(time) ? time : 0,
			own: author === this.selfId,
			relayed: author !== from,
			seenBy: new Set(),
		};
	}

	/**
	 * Adds a received message unless it is known; advances the clock.
	 * @param {ChatMessage} m
	 * @returns {boolean} whether it was new
	 */
	merge(m) {
		this.clock = Math.max(this.clock, m.lamport);
		const known = this.byId.get(m.id);
		if (known) {
			return false;
		}
		return this.insert(m);
	}

	/**
	 * @param {ChatMessage} m
	 * @returns {boolean} whether it was kept
	 */
	insert(m) {
		const list = this.messages;
		if (list.length >= this.keep && compareMessages(m, list[0]) < 0) {
			return false; // older than everything kept
		}
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
		this.byId.set(m.id, m);
		const before = lo + 1 < list.length ? list[lo + 1].id : null;
		this.emit('message', { message: m, before });
		if (list.length > this.keep) {
			const gone = list.splice(0, list.length - this.keep);
			for (const g of gone) {
				this.byId.delete(g.id);
			}
			this.emit('removed', { ids: gone.map((g) => g.id) });
		}
		return true;
	}
}

// ---- safe rendering ----------------------------------------------------

const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;

/**
 * Splits a text into plain parts and http(s) links. Pure.
 * @param {string} text
 * @returns {Array<{ text: string, href?: string }>}
 */
export function splitLinks(text) {
	/** @type {Array<{ text: string, href?: string }>} */
	const parts = [];
	let last = 0;
	URL_RE.lastIndex = 0;
	for (let m = URL_RE.exec(text); m; m = URL_RE.exec(text)) {
		let url = trimUrl(m[0]);
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
		parts.push({ text: url, href: parsed.href });
		last = end;
	}
	if (last < text.length) {
		parts.push({ text: text.slice(last) });
	}
	return parts;
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
		if (open && count(url, open) < count(url, c)) {
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
function count(s, c) {
	return s.split(c).length - 1;
}

/**
 * Renders a text as DOM nodes: text nodes, and `<a>` elements for http(s)
 * URLs that open in a new tab without a referrer or an opener. Never parses
 * HTML. Newlines stay in the text nodes (show them with CSS
 * `white-space: pre-wrap`).
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
			frag.append(a);
		} else {
			frag.append(doc.createTextNode(part.text));
		}
	}
	return frag;
}
