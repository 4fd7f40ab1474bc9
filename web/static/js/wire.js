// @ts-check
/**
 * @file Pure checks of what peers send over the data channel, the
 * per-peer budget that bounds how much of it is looked at, and the
 * length-prefixed framing of what is signed or hashed. Peers are
 * untrusted: every field is checked for its type, range and length before
 * use, and nothing here throws on hostile input (a bad value is reported
 * as invalid, never thrown). Used by chat.js, by mesh.js for its own
 * messages, and by trust.js. No DOM.
 */

/** Largest data-channel message parsed, in UTF-16 code units. */
export const MAX_CHANNEL_MESSAGE = 256 * 1024;
/** Longest message type, in characters. */
const MAX_TYPE = 32;

/** A member id or a message id: base64url, 1 to 64 characters. */
const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
/** A raw 64-byte ECDSA P-256 signature (r‖s), base64url without padding. */
const SIG_RE = /^[A-Za-z0-9_-]{86}$/;
/**
 * C0 and C1 controls other than tab and newline; the bidi overrides and
 * isolates, which can make text read differently from what it is.
 */
// eslint-disable-next-line no-control-regex
export const BAD_CHARS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/** The largest time a Date can hold, in ms since the epoch (ECMA-262 §21.4.1.1). */
export const MAX_DATE_MS = 8.64e15;

/**
 * @param {unknown} v
 * @returns {v is Record<string, unknown>}
 */
export function isObject(v) {
	return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * A member or message id.
 * @param {unknown} v
 * @returns {v is string}
 */
export function isId(v) {
	return typeof v === 'string' && ID_RE.test(v);
}

/**
 * A signature in the wire form of contract B (docs/protocol.md).
 * @param {unknown} v
 * @returns {v is string}
 */
export function isSig(v) {
	return typeof v === 'string' && SIG_RE.test(v);
}

/**
 * An integer in [min, max], both safe.
 * @param {unknown} v
 * @param {number} min
 * @param {number} max
 * @returns {v is number}
 */
export function isIntIn(v, min, max) {
	return Number.isSafeInteger(v) && /** @type {number} */ (v) >= min && /** @type {number} */ (v) <= max;
}

/**
 * A time a Date can show (ms since the epoch, an integer in the Date
 * range); anything else is no time at all.
 * @param {unknown} v
 * @returns {v is number}
 */
export function isShowableTime(v) {
	return isIntIn(v, 0, MAX_DATE_MS);
}

/**
 * The length of a text as the limits count it: Unicode code points.
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
 * Whether a text is acceptable as a chat message: a string, non-blank,
 * within max code points, no control characters (other than newline and
 * tab), no bidi overrides.
 * @param {unknown} text
 * @param {number} max
 * @returns {text is string}
 */
export function isText(text, max) {
	if (typeof text !== 'string' || text.length === 0 || text.length > max * 2) {
		return false;
	}
	BAD_CHARS.lastIndex = 0;
	return !BAD_CHARS.test(text) && text.trim() !== '' && textLength(text) <= max;
}

/**
 * Parses one data-channel message: a string of at most MAX_CHANNEL_MESSAGE
 * code units holding a JSON object with a short string `type`. Returns
 * null for anything else, never throws.
 * @param {unknown} raw
 * @returns {({ type: string } & Record<string, unknown>) | null}
 */
export function parseChannelMessage(raw) {
	if (typeof raw !== 'string' || raw.length > MAX_CHANNEL_MESSAGE) {
		return null;
	}
	/** @type {unknown} */
	let data;
	try {
		data = JSON.parse(raw);
	} catch {
		return null;
	}
	if (!isObject(data) || typeof data.type !== 'string' || data.type.length === 0 || data.type.length > MAX_TYPE) {
		return null;
	}
	return /** @type {{ type: string } & Record<string, unknown>} */ (data);
}

/**
 * A token bucket: `rate` units a second, up to `burst` saved.
 */
export class TokenBucket {
	/**
	 * @param {number} rate units a second
	 * @param {number} burst most units at once
	 * @param {() => number} [now] the clock, in ms (tests give their own)
	 */
	constructor(rate, burst, now = () => performance.now()) {
		this.rate = rate;
		this.burst = burst;
		this.now = now;
		this.tokens = burst;
		this.at = now();
	}

	/** Adds what the time since the last look has earned, up to the burst. */
	refill() {
		const t = this.now();
		this.tokens = Math.min(this.burst, this.tokens + ((t - this.at) / 1000) * this.rate);
		this.at = t;
	}

	/**
	 * Takes n units if there are that many; otherwise takes nothing.
	 * @param {number} n
	 * @returns {boolean} whether they were taken
	 */
	take(n) {
		this.refill();
		if (n > this.tokens) {
			return false;
		}
		this.tokens -= n;
		return true;
	}

	/**
	 * How long until n units are saved, in ms; 0 when they are.
	 * @param {number} n
	 */
	wait(n) {
		this.refill();
		return n > this.tokens ? ((n - this.tokens) / this.rate) * 1000 : 0;
	}

	/** Whether the bucket holds its whole burst: as good as a new one. */
	full() {
		this.refill();
		return this.tokens >= this.burst;
	}
}

/**
 * What one peer may send: messages a second and code units a second, each
 * a token bucket. A message is let through only when both budgets have
 * room for it.
 * @typedef {{ messages: number, messageBurst: number, units: number, unitBurst: number }} PeerBudget
 */

/**
 * Per-peer budgets, one pair of buckets per peer id.
 */
export class PeerLimiter {
	/**
	 * @param {PeerBudget} budget
	 * @param {() => number} [now] the clock, in ms
	 */
	constructor(budget, now = () => performance.now()) {
		this.budget = budget;
		this.now = now;
		/** @type {Map<string, { messages: TokenBucket, units: TokenBucket }>} */
		this.peers = new Map();
		/** Messages let through and refused so far, all peers together. */
		this.allowed = 0;
		this.refused = 0;
	}

	/**
	 * Whether the peer may send one more message of this size now; when it
	 * may, the message is counted against its budget.
	 * @param {string} peer
	 * @param {number} units the message's size
	 */
	allow(peer, units) {
		let b = this.peers.get(peer);
		if (!b) {
			const { messages, messageBurst, units: rate, unitBurst } = this.budget;
			b = { messages: new TokenBucket(messages, messageBurst, this.now), units: new TokenBucket(rate, unitBurst, this.now) };
			this.peers.set(peer, b);
		}
		if (!b.units.take(units)) {
			this.refused++;
			return false;
		}
		if (!b.messages.take(1)) {
			b.units.tokens += units; // not let through: give the volume back
			this.refused++;
			return false;
		}
		this.allowed++;
		return true;
	}

	/**
	 * Forgets a peer (it left).
	 * @param {string} peer
	 */
	forget(peer) {
		this.peers.delete(peer);
	}
}

/**
 * Length-prefixed fields: for each, its UTF-8 length as 4 bytes big-endian,
 * then its UTF-8 bytes. The framing of signed chat messages (contract B) and
 * of the safety code's input: no two lists of fields give the same bytes.
 * @param {string[]} fields
 * @returns {Uint8Array<ArrayBuffer>}
 */
export function lengthPrefixed(fields) {
	const enc = new TextEncoder();
	const parts = fields.map((f) => enc.encode(f));
	const out = new Uint8Array(parts.reduce((n, p) => n + 4 + p.length, 0));
	const view = new DataView(out.buffer);
	let at = 0;
	for (const p of parts) {
		view.setUint32(at, p.length);
		out.set(p, at + 4);
		at += 4 + p.length;
	}
	return out;
}
