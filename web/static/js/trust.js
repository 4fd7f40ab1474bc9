// @ts-check
/**
 * @file Who is who in a room, and proof of it (docs/protocol.md §7.2 and
 * §11):
 *
 * - each member's identity key: an ECDSA P-256 key pair made here with
 *   WebCrypto (the private key cannot be exported), kept per room and
 *   member, whose public key the server binds to the member and hands out;
 * - each member's DTLS certificate, one for all its peer connections, kept
 *   the same way, so that the others can recognise it;
 * - the ChatSigner of chat.js: signs with our key, verifies with the
 *   author's bound key (a former member's remembered one);
 * - the safety code: a short number computed from every member's
 *   certificate fingerprint and key as this browser sees them; members who
 *   read the same code know nobody sits between any two of them;
 * - what was seen of each member before, so that a changed key or
 *   certificate is said plainly until acknowledged.
 *
 * Everything is kept in a TrustStore: IndexedDB in the browser (which keeps
 * CryptoKey and RTCCertificate objects as they are), memory in tests or
 * when IndexedDB is unavailable.
 */

import { h } from './dom.js';
import { copyText } from './ui.js';
import { lengthPrefixed } from './wire.js';

/** The identity key algorithm (contract A). */
const KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' };
/** The chat signature algorithm (contract B). */
const SIGNATURE = { name: 'ECDSA', hash: 'SHA-256' };
/** A raw (uncompressed SEC1) P-256 public key: 0x04, x, y. */
const RAW_KEY_BYTES = 65;
/** A raw r‖s P-256 signature. */
const SIGNATURE_BYTES = 64;
/** How long a new DTLS certificate is asked to last. */
const CERT_LIFETIME_MS = 365 * 24 * 3600 * 1000;
/** A certificate closer than this to its expiry is replaced before use. */
const CERT_RENEW_BEFORE_MS = 7 * 24 * 3600 * 1000;
/** The first field of the safety code's input: names the computation. */
export const SAFETY_CONTEXT = 'lepeerchat.safety.v1';

// ---- encodings ---------------------------------------------------------------

/**
 * Base64url without padding (RFC 4648 §5), as the protocol writes keys and
 * signatures.
 * @param {Uint8Array} bytes
 * @returns {string}
 */
export function base64url(bytes) {
	let s = '';
	for (const b of bytes) {
		s += String.fromCharCode(b);
	}
	return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/**
 * Decodes base64url without padding; null when it is not that.
 * @param {string} text
 * @returns {Uint8Array<ArrayBuffer> | null}
 */
export function fromBase64url(text) {
	if (typeof text !== 'string' || !/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) {
		return null;
	}
	const bin = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
	return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

// ---- certificate fingerprints ------------------------------------------------

/**
 * A certificate fingerprint as the safety code takes it: the algorithm in
 * lower case, a space, the digest as upper-case hex pairs joined by colons
 * (how SDP writes it). Null when it is not a SHA-256 fingerprint.
 * @param {string} algorithm
 * @param {string} value
 * @returns {string | null}
 */
export function normalFingerprint(algorithm, value) {
	const hex = value.trim().toUpperCase();
	if (algorithm.toLowerCase() !== 'sha-256' || !/^[0-9A-F]{2}(:[0-9A-F]{2}){31}$/.test(hex)) {
		return null;
	}
	return `sha-256 ${hex}`;
}

/**
 * The SHA-256 certificate fingerprint a session description announces
 * (`a=fingerprint:sha-256 …`, at session or media level), normalised. Null
 * when there is none, or when it announces different ones (the DTLS
 * handshake proved only one of them: the code must not pick).
 * @param {string} sdp
 * @returns {string | null}
 */
export function sdpFingerprint(sdp) {
	/** @type {Set<string>} */
	const found = new Set();
	for (const line of sdp.split(/\r?\n/)) {
		const m = /^a=fingerprint:(\S+) (\S+)\s*$/.exec(line);
		if (!m) {
			continue;
		}
		const fp = normalFingerprint(m[1], m[2]);
		if (!fp) {
			return null;
		}
		found.add(fp);
	}
	return found.size === 1 ? [...found][0] : null;
}

/**
 * The fingerprint of one of our certificates, normalised.
 * @param {RTCCertificate} cert
 * @returns {string | null}
 */
export function certificateFingerprint(cert) {
	for (const f of cert.getFingerprints()) {
		const fp = f.algorithm && f.value ? normalFingerprint(f.algorithm, f.value) : null;
		if (fp) {
			return fp;
		}
	}
	return null;
}

// ---- the safety code ---------------------------------------------------------

/**
 * One member as the safety code sees it: its member id, its identity key
 * (base64url, '' when none is bound) and its certificate fingerprint
 * (normalised).
 * @typedef {{id: string, key: string, fingerprint: string}} SafetyEntry
 */

/**
 * The bytes the safety code hashes: the context, then for each member in
 * member id order (UTF-16 code units; ids are ASCII), its id, key and
 * fingerprint, all length-prefixed.
 * @param {SafetyEntry[]} entries one per member, self included
 * @returns {Uint8Array<ArrayBuffer>}
 */
export function safetyInput(entries) {
	const sorted = [...entries].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
	return lengthPrefixed([SAFETY_CONTEXT, ...sorted.flatMap((e) => [e.id, e.key, e.fingerprint])]);
}

/**
 * The safety code: the first 64 bits of the SHA-256 of safetyInput, as an
 * unsigned big-endian integer, modulo 10^16, written as 16 decimal digits
 * (leading zeros kept) in four groups of four joined by spaces.
 * @param {SafetyEntry[]} entries
 * @returns {Promise<string>}
 */
export async function safetyCode(entries) {
	const digest = new DataView(await crypto.subtle.digest('SHA-256', safetyInput(entries)));
	const n = digest.getBigUint64(0) % 10_000_000_000_000_000n;
	const digits = n.toString().padStart(16, '0');
	return digits.match(/.{4}/g)?.join(' ') ?? digits;
}

// ---- what was seen before ----------------------------------------------------

/** @typedef {{key: string, fingerprint: string}} Seen */
/** @typedef {'key' | 'certificate'} Change */

/**
 * Compares what is seen of a member now with what was seen of it before.
 * A field counts only when both sides know it: a key not bound yet, or a
 * fingerprint not known before the connection, is no change. The record
 * to keep takes what is newly known and keeps the old value of a changed
 * field (the change stays flagged until acknowledged, see acknowledge).
 * @param {Seen | undefined} before
 * @param {Seen} now
 * @returns {{record: Seen, changed: Change[]}}
 */
export function reconcile(before, now) {
	if (!before) {
		return { record: { ...now }, changed: [] };
	}
	/** @type {Change[]} */
	const changed = [];
	if (before.key && now.key && before.key !== now.key) {
		changed.push('key');
	}
	if (before.fingerprint && now.fingerprint && before.fingerprint !== now.fingerprint) {
		changed.push('certificate');
	}
	return { record: { key: before.key || now.key, fingerprint: before.fingerprint || now.fingerprint }, changed };
}

/**
 * The record to keep once a change is acknowledged: what is seen now, with
 * what was known before for a field not known now.
 * @param {Seen | undefined} before
 * @param {Seen} now
 * @returns {Seen}
 */
export function acknowledge(before, now) {
	return { key: now.key || before?.key || '', fingerprint: now.fingerprint || before?.fingerprint || '' };
}

// ---- the store ---------------------------------------------------------------

/**
 * @typedef {'identity' | 'certificate' | 'seen'} StoreName
 * identity: our key pair per room and member ({privateKey, publicKey, key});
 * certificate: our DTLS certificate per room and member;
 * seen: per room, what was seen of each other member (Seen).
 */

/**
 * Where keys, certificates and what was seen are kept, by room and member.
 * @typedef {{
 *   get(store: StoreName, room: string, member: string): Promise<any>,
 *   put(store: StoreName, room: string, member: string, value: any): Promise<void>,
 *   list(store: StoreName, room: string): Promise<Map<string, any>>,
 *   forgetRoom(room: string): Promise<void>,
 *   forgetAll(): Promise<void>,
 * }} TrustStore
 */

/** @type {StoreName[]} */
const STORES = ['identity', 'certificate', 'seen'];

/**
 * A TrustStore in memory (tests; browsers without IndexedDB).
 * @returns {TrustStore}
 */
export function memoryStore() {
	/** @type {Map<StoreName, Map<string, Map<string, any>>>} */
	const data = new Map(STORES.map((s) => [s, new Map()]));
	/** @param {StoreName} store @param {string} room */
	const roomOf = (store, room) => {
		const rooms = /** @type {Map<string, Map<string, any>>} */ (data.get(store));
		let r = rooms.get(room);
		if (!r) {
			r = new Map();
			rooms.set(room, r);
		}
		return r;
	};
	return {
		get: async (store, room, member) => roomOf(store, room).get(member),
		put: async (store, room, member, value) => {
			roomOf(store, room).set(member, value);
		},
		list: async (store, room) => new Map(roomOf(store, room)),
		forgetRoom: async (room) => {
			for (const rooms of data.values()) {
				rooms.delete(room);
			}
		},
		forgetAll: async () => {
			for (const rooms of data.values()) {
				rooms.clear();
			}
		},
	};
}

/**
 * Settles with an IndexedDB request.
 * @template T
 * @param {IDBRequest<T>} req
 * @returns {Promise<T>}
 */
function done(req) {
	return new Promise((resolve, reject) => {
		req.onsuccess = () => resolve(req.result);
		req.onerror = () => reject(req.error);
	});
}

/**
 * A TrustStore in IndexedDB (database "lepeerchat.trust"): one object
 * store per StoreName, keyed by [room, member].
 * @param {IDBFactory} idb
 * @returns {TrustStore}
 */
export function indexedDBStore(idb) {
	/** @type {Promise<IDBDatabase> | null} */
	let opened = null;
	const db = () => {
		opened ??= new Promise((resolve, reject) => {
			const req = idb.open('lepeerchat.trust', 1);
			req.onupgradeneeded = () => {
				for (const s of STORES) {
					req.result.createObjectStore(s);
				}
			};
			req.onsuccess = () => {
				// Another tab upgrading the database: let it, open again later.
				req.result.onversionchange = () => {
					req.result.close();
					opened = null;
				};
				resolve(req.result);
			};
			req.onerror = () => {
				opened = null;
				reject(req.error);
			};
			// Held by another tab: go on without, and try again next time.
			req.onblocked = () => {
				opened = null;
				reject(new Error('IndexedDB is blocked by another tab'));
			};
		});
		return opened;
	};
	/**
	 * @param {StoreName[]} stores
	 * @param {IDBTransactionMode} mode
	 */
	const tx = async (stores, mode) => (await db()).transaction(stores, mode);
	/** Every [room, member] key of one room. @param {string} room */
	const ofRoom = (room) => IDBKeyRange.bound([room], [room, []]);
	return {
		get: async (store, room, member) => done((await tx([store], 'readonly')).objectStore(store).get([room, member])),
		put: async (store, room, member, value) => {
			await done((await tx([store], 'readwrite')).objectStore(store).put(value, [room, member]));
		},
		list: async (store, room) => {
			const os = (await tx([store], 'readonly')).objectStore(store);
			const [keys, values] = await Promise.all([done(os.getAllKeys(ofRoom(room))), done(os.getAll(ofRoom(room)))]);
			return new Map(keys.map((k, i) => [String(/** @type {IDBValidKey[]} */ (k)[1]), values[i]]));
		},
		forgetRoom: async (room) => {
			const t = await tx(STORES, 'readwrite');
			await Promise.all(STORES.map((s) => done(t.objectStore(s).delete(ofRoom(room)))));
		},
		forgetAll: async () => {
			const t = await tx(STORES, 'readwrite');
			await Promise.all(STORES.map((s) => done(t.objectStore(s).clear())));
		},
	};
}

/**
 * Our identity key in one room: the key pair and the public key as the
 * protocol writes it (base64url of the raw 65 bytes).
 * @typedef {{privateKey: CryptoKey, publicKey: CryptoKey, key: string}} IdentityKey
 */

/**
 * Makes a new identity key pair; the private key cannot be exported.
 * @returns {Promise<IdentityKey>}
 */
export async function newIdentityKey() {
	const pair = /** @type {CryptoKeyPair} */ (await crypto.subtle.generateKey(KEY_ALGORITHM, false, ['sign', 'verify']));
	const raw = new Uint8Array(await crypto.subtle.exportKey('raw', pair.publicKey));
	return { privateKey: pair.privateKey, publicKey: pair.publicKey, key: base64url(raw) };
}

/**
 * Makes a DTLS certificate (ECDSA P-256, a year).
 * @returns {Promise<RTCCertificate>}
 */
function newCertificate() {
	return RTCPeerConnection.generateCertificate(/** @type {AlgorithmIdentifier} */ ({ ...KEY_ALGORITHM, expires: CERT_LIFETIME_MS }));
}

/**
 * How long a page waits for the keyring (its storage, the making of a key)
 * before it goes on without: a hung IndexedDB must not keep anyone from
 * joining.
 */
export const KEYRING_WAIT_MS = 3000;

/**
 * The promise, or a rejection once ms have passed without it settling.
 * @template T
 * @param {Promise<T>} p
 * @param {number} ms
 * @param {string} what what is waited for, for the error
 * @returns {Promise<T>}
 */
function bounded(p, ms, what) {
	/** @type {ReturnType<typeof setTimeout> | undefined} */
	let timer;
	const late = new Promise((_, reject) => {
		timer = setTimeout(() => reject(new Error(`${what} not ready within ${ms} ms (is the browser's storage stuck?)`)), ms);
	});
	return /** @type {Promise<T>} */ (Promise.race([p, late])).finally(() => clearTimeout(timer));
}

/**
 * This browser's keys and certificates, one of each per room and member,
 * made when first needed and reused on every later visit, and what it saw
 * of the other members. What a page waits for to join (identity,
 * certificate, keep, seen) comes within waitMs or fails.
 */
export class Keyring {
	/**
	 * @param {TrustStore} store
	 * @param {{makeCertificate?: () => Promise<RTCCertificate>, now?: () => number, waitMs?: number}} [options]
	 */
	constructor(store, { makeCertificate = newCertificate, now = Date.now, waitMs = KEYRING_WAIT_MS } = {}) {
		this.store = store;
		this.makeCertificate = makeCertificate;
		this.now = now;
		this.waitMs = waitMs;
		/**
		 * Keys in use, by "room member": the same promise for every caller, so
		 * that two callers never make two keys.
		 * @type {Map<string, Promise<IdentityKey>>}
		 */
		this.identities = new Map();
		/** @type {Map<string, Promise<RTCCertificate>>} */
		this.certificates = new Map();
	}

	/**
	 * Our identity key for a member of a room: the one kept, or a new one
	 * (kept from then on).
	 * @param {string} room
	 * @param {string} member
	 * @returns {Promise<IdentityKey>}
	 */
	identity(room, member) {
		return bounded(once(this.identities, room, member, () => this.#loadIdentity(room, member)), this.waitMs, 'the identity key');
	}

	/**
	 * @param {string} room
	 * @param {string} member
	 * @returns {Promise<IdentityKey>}
	 */
	async #loadIdentity(room, member) {
		const kept = await this.store.get('identity', room, member).catch(() => undefined);
		if (kept && kept.privateKey && kept.publicKey && typeof kept.key === 'string') {
			return kept;
		}
		const made = await newIdentityKey();
		await this.store.put('identity', room, member, made).catch(() => {});
		return made;
	}

	/**
	 * A new identity key, for a member whose id is not known yet (create,
	 * join): keep it with keep once it is.
	 * @returns {Promise<IdentityKey>}
	 */
	fresh() {
		return newIdentityKey();
	}

	/**
	 * Keeps a key made before the member id was known (create, join) as
	 * the member's.
	 * @param {string} room
	 * @param {string} member
	 * @param {IdentityKey} key
	 * @returns {Promise<void>}
	 */
	async keep(room, member, key) {
		this.identities.set(`${room} ${member}`, Promise.resolve(key));
		await bounded(this.store.put('identity', room, member, key), this.waitMs, 'keeping the identity key');
	}

	/**
	 * Our DTLS certificate for a member of a room: the one kept unless it
	 * is near its expiry, else a new one (kept from then on).
	 * @param {string} room
	 * @param {string} member
	 * @returns {Promise<RTCCertificate>}
	 */
	certificate(room, member) {
		return bounded(once(this.certificates, room, member, () => this.#loadCertificate(room, member)), this.waitMs, 'the certificate');
	}

	/**
	 * @param {string} room
	 * @param {string} member
	 * @returns {Promise<RTCCertificate>}
	 */
	async #loadCertificate(room, member) {
		const kept = await this.store.get('certificate', room, member).catch(() => undefined);
		if (kept && typeof kept.expires === 'number' && kept.expires - this.now() > CERT_RENEW_BEFORE_MS) {
			return kept;
		}
		const made = await this.makeCertificate();
		await this.store.put('certificate', room, member, made).catch(() => {});
		return made;
	}

	/**
	 * What was seen before of the other members of a room, by member id
	 * (none when the storage fails or does not answer in time).
	 * @param {string} room
	 * @returns {Promise<Map<string, Seen>>}
	 */
	async seen(room) {
		return bounded(this.store.list('seen', room), this.waitMs, 'what was seen of the members').catch((err) => {
			console.warn('lepeerchat: going on without what was seen of the members', err);
			return new Map();
		});
	}

	/**
	 * Records what is seen of a member of a room.
	 * @param {string} room
	 * @param {string} member
	 * @param {Seen} seen
	 * @returns {Promise<void>}
	 */
	async see(room, member, seen) {
		await this.store.put('seen', room, member, seen);
	}

	/**
	 * Forgets everything kept for a room (its identity is forgotten).
	 * @param {string} room
	 * @returns {Promise<void>}
	 */
	async forgetRoom(room) {
		for (const map of [this.identities, this.certificates]) {
			for (const id of map.keys()) {
				if (id.startsWith(`${room} `)) {
					map.delete(id);
				}
			}
		}
		await this.store.forgetRoom(room);
	}

	/** Forgets everything kept for every room. @returns {Promise<void>} */
	async forgetAll() {
		this.identities.clear();
		this.certificates.clear();
		await this.store.forgetAll();
	}
}

/**
 * The promise kept in map for a room and member, or a new one from load
 * (forgotten if it fails, so that the next caller tries again): every
 * caller gets the same key or certificate, never two made at once.
 * @template T
 * @param {Map<string, Promise<T>>} map
 * @param {string} room
 * @param {string} member
 * @param {() => Promise<T>} load
 * @returns {Promise<T>}
 */
function once(map, room, member, load) {
	const id = `${room} ${member}`;
	let p = map.get(id);
	if (!p) {
		p = load();
		map.set(id, p);
		p.catch(() => map.delete(id));
	}
	return p;
}

/** The page's keyring: in IndexedDB when the browser has it. */
export const keyring = new Keyring(typeof indexedDB === 'undefined' ? memoryStore() : indexedDBStore(indexedDB));

// ---- signing chat messages ---------------------------------------------------

/**
 * The ChatSigner of chat.js (contract B): signs with our identity key,
 * verifies with the author's key (RoomTrust#keysOf: the bound one of a
 * member in the list, the remembered one of a former member).
 */
export class Signer {
	/**
	 * @param {CryptoKey | null} privateKey
	 * @param {(author: string) => string[]} keysOf the author's public keys (base64url raw)
	 */
	constructor(privateKey, keysOf) {
		/** @type {CryptoKey | null} null: none (an insecure context), sign fails */
		this.privateKey = privateKey;
		this.keysOf = keysOf;
		/** @type {Map<string, Promise<CryptoKey | null>>} imported public keys */
		this.imported = new Map();
	}

	/**
	 * @param {Uint8Array<ArrayBuffer>} bytes
	 * @returns {Promise<string>}
	 */
	async sign(bytes) {
		if (!this.privateKey) {
			throw new Error('no identity key to sign with');
		}
		return base64url(new Uint8Array(await crypto.subtle.sign(SIGNATURE, this.privateKey, bytes)));
	}

	/**
	 * @param {string} author
	 * @param {Uint8Array<ArrayBuffer>} bytes
	 * @param {string} sig
	 * @returns {Promise<boolean>} false when no key of the author verifies it
	 */
	async verify(author, bytes, sig) {
		const s = fromBase64url(sig);
		if (!s || s.length !== SIGNATURE_BYTES) {
			return false;
		}
		if (!globalThis.crypto?.subtle) {
			return false;
		}
		for (const k of new Set(this.keysOf(author))) {
			const key = await this.#publicKey(k);
			if (key && (await crypto.subtle.verify(SIGNATURE, key, s, bytes).catch(() => false))) {
				return true;
			}
		}
		return false;
	}

	/**
	 * @param {string} text
	 * @returns {Promise<CryptoKey | null>}
	 */
	#publicKey(text) {
		let p = this.imported.get(text);
		if (!p) {
			const raw = fromBase64url(text);
			p = raw && raw.length === RAW_KEY_BYTES && raw[0] === 4 ? crypto.subtle.importKey('raw', raw, KEY_ALGORITHM, false, ['verify']).catch(() => null) : Promise.resolve(null);
			this.imported.set(text, p);
		}
		return p;
	}
}

// ---- the room's trust panel --------------------------------------------------

/**
 * The safety code's place in the people panel: built at once with the room
 * page (so that nothing moves when the code comes), filled by RoomTrust.
 */
export class SafetyPanel {
	/** @param {HTMLElement} element an empty container, named by the panel's heading */
	constructor(element) {
		this.code = h('output', { id: 'safety-code', class: 'safety-code', 'aria-labelledby': 'safety-title' });
		this.covers = h('p', { id: 'safety-covers', class: 'muted small' }, COVERS_ONLY_YOU);
		this.copyStatus = h('p', { class: 'muted small', role: 'status', id: 'safety-copy-status' });
		const copy = h('button', { type: 'button', class: 'secondary small', id: 'safety-copy' }, 'Copy code');
		copy.addEventListener('click', async () => {
			const text = this.code.textContent ?? '';
			const r = await copyText(text);
			this.copyStatus.textContent = r.copied ? 'Safety code copied.' : `Copy it by hand: ${text}`;
		});
		element.setAttribute('aria-labelledby', 'safety-title');
		element.replaceChildren(
			h('h3', { id: 'safety-title' }, 'Safety code'),
			h('div', { class: 'safety-row' }, this.code, copy),
			this.covers,
			h(
				'p',
				{ class: 'muted small' },
				'Read it aloud to the others, by voice or video. If everyone sees the same code, no one sits between any two of you, not even the server. It changes when people come or go.',
			),
			this.copyStatus,
		);
	}

	/**
	 * Shows a code and how many members it covers (self included).
	 * @param {string} code
	 * @param {number} members
	 */
	show(code, members) {
		// The code is an <output>, a polite live region: touched only when it
		// changes, it is read out only then (not on every connection's stats).
		if (this.code.textContent === code && this.code.dataset.members === String(members)) {
			return;
		}
		this.code.textContent = code;
		this.code.dataset.members = String(members);
		const others = members - 1;
		this.covers.textContent = others === 0 ? COVERS_ONLY_YOU : `Covers you and ${others === 1 ? '1 person' : `${others} people`} connected to you.`;
	}
}

const COVERS_ONLY_YOU = 'Covers only you: nobody is connected to you yet.';

/** @typedef {{id: string, name: string, key?: string}} TrustMember */

/**
 * @typedef {object} RoomTrustOptions
 * @property {string} roomId
 * @property {string} selfId
 * @property {IdentityKey | null} identity our identity key in the room (null: none, an insecure context)
 * @property {RTCCertificate | null} certificate our DTLS certificate in the room (null: the browser's own per connection)
 * @property {() => boolean} selfBound whether the server has a key bound to us now (one in our
 *   member object): asked on every update, so that it follows a rejoin
 * @property {Keyring} keyring where what was seen is kept
 * @property {Map<string, Seen>} seen what was seen before, by member id (Keyring#seen)
 * @property {SafetyPanel} panel where the safety code is shown
 * @property {() => TrustMember[]} members the other members, with their bound keys
 * @property {(id: string) => string | null} fingerprintOf the certificate fingerprint of a
 *   member's end of our connected peer connection with it, null when not connected
 * @property {(id: string, text: string | null, acknowledge: () => void) => void} warn
 *   shows (or, with null, hides) a warning next to a member, with a button that
 *   acknowledges it; called on every update while the warning stands
 */

/**
 * The safety code of one room page, kept current, and the warnings about
 * members whose key or certificate changed. Call update whenever the
 * members, their keys or the peer connections change.
 */
export class RoomTrust {
	/** @param {RoomTrustOptions} options */
	constructor(options) {
		this.o = options;
		this.selfFingerprint = (options.certificate && certificateFingerprint(options.certificate)) ?? '';
		/**
		 * Members whose key or certificate changed, until acknowledged: what
		 * changed, and what is seen of them now.
		 * @type {Map<string, {changes: Set<Change>, now: Seen}>}
		 */
		this.flagged = new Map();
		/** @type {Promise<void>} updates run one at a time, in order */
		this.running = Promise.resolve();
		this.closed = false;
	}

	/** Recomputes the code and the warnings (queued after any running update). */
	update() {
		this.running = this.running.then(() => this.#update()).catch((err) => console.debug('lepeerchat: safety code', err));
	}

	/**
	 * The key a chat author's messages are verified with (contract B): the
	 * key bound to a member in the list (none while none is bound); for an
	 * author no longer in the list, the one remembered of it (the history
	 * of a former member). A remembered key never stands in for a bound
	 * one: a member whose key changed is checked by its new key only.
	 * @param {string} author
	 * @returns {string[]}
	 */
	keysOf(author) {
		if (author === this.o.selfId) {
			return this.o.identity ? [this.o.identity.key] : [];
		}
		const member = this.o.members().find((m) => m.id === author);
		const key = member ? member.key : this.o.seen.get(author)?.key;
		return key ? [key] : [];
	}

	close() {
		this.closed = true;
	}

	async #update() {
		if (this.closed) {
			return;
		}
		// Our key counts while the server has one bound to us: the others
		// then see it (or whatever the server says instead, which the code
		// shows).
		const selfKey = this.o.identity && this.o.selfBound() ? this.o.identity.key : '';
		/** @type {SafetyEntry[]} */
		const entries = [{ id: this.o.selfId, key: selfKey, fingerprint: this.selfFingerprint }];
		for (const m of this.o.members()) {
			const fingerprint = this.o.fingerprintOf(m.id);
			this.#check(m, { key: m.key ?? '', fingerprint: fingerprint ?? '' });
			if (fingerprint) {
				entries.push({ id: m.id, key: m.key ?? '', fingerprint });
			}
		}
		const code = await safetyCode(entries);
		if (this.closed) {
			return;
		}
		this.o.panel.show(code, entries.length);
	}

	/**
	 * Compares what is seen of a member with what was seen before, keeps
	 * what is new, and says so when its key or certificate changed.
	 * @param {TrustMember} m
	 * @param {Seen} now
	 */
	#check(m, now) {
		if (!now.key && !now.fingerprint) {
			return;
		}
		const before = this.o.seen.get(m.id);
		const { record, changed } = reconcile(before, now);
		if (!before || record.key !== before.key || record.fingerprint !== before.fingerprint) {
			this.#keep(m.id, record);
		}
		// A change stays flagged while what changed cannot be seen (the
		// connection is down), until acknowledged.
		const flagged = this.flagged.get(m.id) ?? { changes: new Set(), now };
		for (const c of changed) {
			flagged.changes.add(c);
		}
		flagged.now = acknowledge(flagged.now, now);
		if (flagged.changes.size === 0) {
			return;
		}
		this.flagged.set(m.id, flagged);
		this.o.warn(m.id, changeWarning(m.name, [...flagged.changes].sort()), () => {
			this.flagged.delete(m.id);
			this.o.warn(m.id, null, () => {});
			this.#keep(m.id, acknowledge(this.o.seen.get(m.id), flagged.now));
			this.update();
		});
	}

	/**
	 * @param {string} id
	 * @param {Seen} record
	 */
	#keep(id, record) {
		this.o.seen.set(id, record);
		this.o.keyring.see(this.o.roomId, id, record).catch((err) => console.debug('lepeerchat: keeping what was seen', err));
	}
}

/**
 * The words next to a member whose key or certificate changed.
 * @param {string} name
 * @param {Change[]} changed
 * @returns {string}
 */
export function changeWarning(name, changed) {
	const what = changed.length === 2 ? 'identity key and connection certificate' : changed[0] === 'key' ? 'identity key' : 'connection certificate';
	return `${name || 'This member'}’s ${what} changed since this browser last saw them. If they did not switch browser or clear its data, someone may be listening in between: compare the safety code before you trust it.`;
}
