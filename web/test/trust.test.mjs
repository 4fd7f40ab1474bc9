// The pure parts of trust.js and the mesh's session limiter, without a
// browser: the safety code's input and value (the test vector of
// docs/protocol.md §11.2), fingerprints read from SDP, what counts
// as a changed key or certificate, the keyring and the chat signer.
// Run: node --test web/test/

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { DEFERRED_SIGNALS, Mesh, SessionLimiter } from '../static/js/mesh.js';
import {
	Keyring,
	RoomTrust,
	Signer,
	acknowledge,
	base64url,
	fromBase64url,
	memoryStore,
	normalFingerprint,
	reconcile,
	safetyCode,
	safetyInput,
	sdpFingerprint,
} from '../static/js/trust.js';
import { lengthPrefixed } from '../static/js/wire.js';

/** @param {number} first */
const fingerprint = (first) => 'sha-256 ' + Array.from({ length: 32 }, (_, i) => (first + i).toString(16).toUpperCase()).join(':');

// The worked example of docs/protocol.md §11.2.
const VECTOR = [
	{ id: 'mB', key: 'BLc3L6Kprx16TmFy0vxTRfDnRJtGFjj18bDAIfxEgwBpJxP8rnw84lduF8CFG36Wih7A3t4e0x472a_poT7kNDk', fingerprint: fingerprint(0xb0) },
	{ id: 'mA', key: 'BIGwPSxXit8VdUoihoaKEpE5q8_agR9-VqGCAuPzqq5u1GutT-NFf3Wzm9yUlY7JY9O04agUGsSZOFuziCKBe-I', fingerprint: fingerprint(0xa0) },
];

test('the safety code input sorts members by id and frames context, id, key, fingerprint', () => {
	const input = safetyInput(VECTOR);
	assert.equal(input.length, 432);
	const expected = lengthPrefixed(['lepeerchat.safety.v1', ...['mA', VECTOR[1].key, VECTOR[1].fingerprint], ...['mB', VECTOR[0].key, VECTOR[0].fingerprint]]);
	assert.deepEqual(input, expected);
	assert.deepEqual(safetyInput([...VECTOR].reverse()), input, 'the order members are given in does not matter');
});

test('the safety code of the test vector', async () => {
	const digest = Buffer.from(await crypto.subtle.digest('SHA-256', safetyInput(VECTOR))).toString('hex');
	assert.equal(digest, 'a61b4f0addafb709c1eb64499bdfa5cfbfa9dd0e80c678781a72c3d84c9007f0');
	assert.equal(await safetyCode(VECTOR), '9247 3427 5477 2745');
	assert.equal(await safetyCode([VECTOR[1]]), '7242 8120 5553 8372', 'one member alone');
});

test('the safety code changes with any member, key or fingerprint', async () => {
	const base = await safetyCode(VECTOR);
	const variants = {
		'another key': [{ ...VECTOR[0], key: VECTOR[1].key }, VECTOR[1]],
		'another fingerprint': [{ ...VECTOR[0], fingerprint: fingerprint(0xc0) }, VECTOR[1]],
		'another id': [{ ...VECTOR[0], id: 'mC' }, VECTOR[1]],
		'a member missing': [VECTOR[0]],
		'a member more': [...VECTOR, { id: 'mC', key: '', fingerprint: fingerprint(0xc0) }],
		'no key bound': [{ ...VECTOR[0], key: '' }, VECTOR[1]],
	};
	for (const [name, entries] of Object.entries(variants)) {
		assert.notEqual(await safetyCode(entries), base, name);
	}
});

test('safety codes are four groups of four digits', async () => {
	for (let i = 0; i < 50; i++) {
		assert.match(await safetyCode([{ id: `m${i}`, key: '', fingerprint: fingerprint(i) }]), /^\d{4} \d{4} \d{4} \d{4}$/);
	}
});

test('fingerprints are normalised: sha-256 only, upper-case colon hex', () => {
	const lower = fingerprint(0xa0).slice(8).toLowerCase();
	assert.equal(normalFingerprint('SHA-256', lower), fingerprint(0xa0));
	assert.equal(normalFingerprint('sha-1', lower.slice(0, 59)), null);
	assert.equal(normalFingerprint('sha-256', lower.slice(3)), null, 'too short');
	assert.equal(normalFingerprint('sha-256', lower.replace(/:/g, '')), null, 'no colons');
	assert.equal(normalFingerprint('sha-256', lower + ':00'), null, 'too long');
});

test('the fingerprint of a session description', () => {
	const fp = fingerprint(0xa0).slice(8);
	const other = fingerprint(0xb0).slice(8);
	const sdp = (/** @type {string[]} */ ...lines) => ['v=0', 'o=- 1 2 IN IP4 127.0.0.1', 's=-', 't=0 0', ...lines, ''].join('\r\n');
	const cases = [
		{ name: 'session level', sdp: sdp(`a=fingerprint:sha-256 ${fp}`, 'm=audio 9 UDP/TLS/RTP/SAVPF 111'), want: fingerprint(0xa0) },
		{ name: 'media level, lower case, repeated', sdp: sdp('m=audio 9 UDP/TLS/RTP/SAVPF 111', `a=fingerprint:sha-256 ${fp.toLowerCase()}`, 'm=video 9 UDP/TLS/RTP/SAVPF 96', `a=fingerprint:sha-256 ${fp}`), want: fingerprint(0xa0) },
		{ name: 'LF line ends', sdp: sdp(`a=fingerprint:sha-256 ${fp}`).replace(/\r/g, ''), want: fingerprint(0xa0) },
		{ name: 'none', sdp: sdp('m=audio 9 UDP/TLS/RTP/SAVPF 111'), want: null },
		{ name: 'two different ones', sdp: sdp(`a=fingerprint:sha-256 ${fp}`, 'm=audio 9 UDP/TLS/RTP/SAVPF 111', `a=fingerprint:sha-256 ${other}`), want: null },
		{ name: 'another algorithm besides', sdp: sdp(`a=fingerprint:sha-256 ${fp}`, `a=fingerprint:sha-1 ${fp.slice(0, 59)}`), want: null },
		{ name: 'malformed', sdp: sdp(`a=fingerprint:sha-256 ${fp.slice(0, 20)}`), want: null },
		{ name: 'empty', sdp: '', want: null },
	];
	for (const c of cases) {
		assert.equal(sdpFingerprint(c.sdp), c.want, c.name);
	}
});

test('what counts as a changed key or certificate', () => {
	const k1 = 'key-one';
	const k2 = 'key-two';
	const f1 = fingerprint(0xa0);
	const f2 = fingerprint(0xb0);
	const cases = [
		{ name: 'first seen', before: undefined, now: { key: k1, fingerprint: f1 }, changed: [], record: { key: k1, fingerprint: f1 } },
		{ name: 'the same', before: { key: k1, fingerprint: f1 }, now: { key: k1, fingerprint: f1 }, changed: [], record: { key: k1, fingerprint: f1 } },
		{ name: 'not connected yet: no fingerprint', before: { key: k1, fingerprint: f1 }, now: { key: k1, fingerprint: '' }, changed: [], record: { key: k1, fingerprint: f1 } },
		{ name: 'fingerprint learnt later', before: { key: k1, fingerprint: '' }, now: { key: k1, fingerprint: f1 }, changed: [], record: { key: k1, fingerprint: f1 } },
		{ name: 'key bound later', before: { key: '', fingerprint: f1 }, now: { key: k1, fingerprint: f1 }, changed: [], record: { key: k1, fingerprint: f1 } },
		{ name: 'key changed', before: { key: k1, fingerprint: f1 }, now: { key: k2, fingerprint: f1 }, changed: ['key'], record: { key: k1, fingerprint: f1 } },
		{ name: 'certificate changed', before: { key: k1, fingerprint: f1 }, now: { key: k1, fingerprint: f2 }, changed: ['certificate'], record: { key: k1, fingerprint: f1 } },
		{ name: 'both changed', before: { key: k1, fingerprint: f1 }, now: { key: k2, fingerprint: f2 }, changed: ['key', 'certificate'], record: { key: k1, fingerprint: f1 } },
	];
	for (const c of cases) {
		const got = reconcile(c.before, c.now);
		assert.deepEqual(got.changed, c.changed, c.name);
		assert.deepEqual(got.record, c.record, `${c.name}: the record keeps the old value until acknowledged`);
	}
	const acked = acknowledge({ key: k1, fingerprint: f1 }, { key: k2, fingerprint: '' });
	assert.deepEqual(acked, { key: k2, fingerprint: f1 }, 'acknowledged: the new key, the fingerprint known before');
	assert.deepEqual(reconcile(acked, { key: k2, fingerprint: f1 }).changed, [], 'no longer flagged once acknowledged');
});

test('base64url without padding round-trips and refuses what is not it', () => {
	for (let n = 0; n < 70; n++) {
		const bytes = crypto.getRandomValues(new Uint8Array(n));
		const text = base64url(bytes);
		assert.doesNotMatch(text, /[+/=]/);
		assert.deepEqual(fromBase64url(text), bytes);
	}
	for (const bad of ['a', 'ab+c', 'ab/c', 'abc=', 'ab c', 'é']) {
		assert.equal(fromBase64url(bad), null, bad);
	}
});

test('the keyring keeps one key and one certificate per room and member, and forgets a room', async () => {
	let made = 0;
	const fakeCert = () => Promise.resolve(/** @type {RTCCertificate} */ (/** @type {unknown} */ ({ expires: Date.now() + 365 * 864e5, n: ++made, getFingerprints: () => [] })));
	const store = memoryStore();
	const ring = new Keyring(store, { makeCertificate: fakeCert });
	const [a, b] = await Promise.all([ring.identity('room', 'me'), ring.identity('room', 'me')]);
	assert.equal(a, b, 'two callers at once get the same key');
	assert.equal(fromBase64url(a.key)?.length, 65);
	assert.equal(fromBase64url(a.key)?.[0], 4, 'uncompressed point');
	assert.equal(a.privateKey.extractable, false, 'the private key cannot be exported');
	await assert.rejects(crypto.subtle.exportKey('pkcs8', a.privateKey));

	const again = new Keyring(store, { makeCertificate: fakeCert });
	assert.equal((await again.identity('room', 'me')).key, a.key, 'a later visit reuses the kept key');
	assert.notEqual((await again.identity('other', 'me')).key, a.key, 'another room has another key');

	const c1 = await ring.certificate('room', 'me');
	assert.equal(await again.certificate('room', 'me'), c1, 'the certificate is reused');
	const late = new Keyring(store, { makeCertificate: fakeCert, now: () => Date.now() + 360 * 864e5 });
	assert.notEqual(await late.certificate('room', 'me'), c1, 'renewed near its expiry');

	const fresh = await ring.fresh();
	await ring.keep('joined', 'm2', fresh);
	assert.equal((await new Keyring(store).identity('joined', 'm2')).key, fresh.key, 'a key made before the member id is kept as its');

	await ring.see('room', 'peer', { key: 'k', fingerprint: 'f' });
	assert.deepEqual([...(await ring.seen('room'))], [['peer', { key: 'k', fingerprint: 'f' }]]);
	await ring.forgetRoom('room');
	assert.equal((await ring.seen('room')).size, 0);
	assert.notEqual((await new Keyring(store).identity('room', 'me')).key, a.key, 'a forgotten room gets a new key');
	assert.equal((await new Keyring(store).identity('other', 'me')).key, (await again.identity('other', 'me')).key, 'other rooms are kept');
});

test('the signer signs with our key and verifies with the author’s keys only', async () => {
	const me = await new Keyring(memoryStore()).identity('room', 'me');
	const other = await new Keyring(memoryStore()).identity('room', 'them');
	/** @type {Record<string, string[]>} */
	const keys = { me: [me.key], them: [other.key], former: ['not a key', other.key], junk: ['AAAA', ''] };
	const signer = new Signer(me.privateKey, (author) => keys[author] ?? []);
	const bytes = lengthPrefixed(['lepeerchat.chat.v1', 'room', 'me', 'id', '1', '2', 'hello']);
	const sig = await signer.sign(bytes);
	assert.equal(fromBase64url(sig)?.length, 64, 'raw r‖s');
	assert.equal(await signer.verify('me', bytes, sig), true);
	const theirs = new Signer(other.privateKey, () => []);
	assert.equal(await signer.verify('former', bytes, await theirs.sign(bytes)), true, 'a remembered key after a junk one');
	const cases = [
		{ name: 'another author', author: 'them', bytes, sig },
		{ name: 'an unknown author', author: 'nobody', bytes, sig },
		{ name: 'junk keys', author: 'junk', bytes, sig },
		{ name: 'other bytes', author: 'me', bytes: lengthPrefixed(['x']), sig },
		{ name: 'a short signature', author: 'me', bytes, sig: sig.slice(0, 40) },
		{ name: 'not base64url', author: 'me', bytes, sig: sig.replace(/.$/, '+') },
		{ name: 'empty', author: 'me', bytes, sig: '' },
	];
	for (const c of cases) {
		assert.equal(await signer.verify(c.author, c.bytes, c.sig), false, c.name);
	}
	await assert.rejects(new Signer(null, () => []).sign(bytes), 'no key: signing fails');
});

test('a peer may start a few sessions at once, then one per refill', () => {
	let now = 0;
	const limiter = new SessionLimiter({ burst: 3, refillMs: 1000, now: () => now });
	assert.deepEqual([0, 1, 2].map(() => limiter.take('a')), [0, 0, 0], 'a burst is taken at once');
	assert.equal(limiter.take('a'), 1000, 'then refused, with the wait');
	assert.equal(limiter.take('b'), 0, 'another peer is not held by it');
	now = 500;
	assert.equal(limiter.take('a'), 500);
	now = 1000;
	assert.equal(limiter.take('a'), 0, 'one more after a refill');
	assert.equal(limiter.refused, 2);
	now = 10_000;
	assert.deepEqual([0, 1, 2].map(() => limiter.take('a')), [0, 0, 0], 'a quiet spell refills the burst: a real reconnection is never slowed');
	now = 100_000;
	limiter.take('c');
	assert.deepEqual([...limiter.buckets.keys()], ['c'], 'full buckets are forgotten');
});

test('40 new sessions a second for a minute are held to a handful', () => {
	let now = 0;
	const limiter = new SessionLimiter({ now: () => now });
	let taken = 0;
	for (let i = 0; i < 40 * 60; i++) {
		now = i * 25;
		if (limiter.take('flooder') === 0) {
			taken++;
		}
	}
	assert.ok(taken <= 8, `${taken} sessions taken`);
	assert.equal(limiter.refused, 40 * 60 - taken);
});

/** A RoomTrust with what it needs from a page: members, what was seen, a panel that records the code. */
function roomTrust({ members = [], seen = new Map(), selfBound = () => true, identity = { key: 'selfKey' } } = {}) {
	const shown = [];
	const trust = new RoomTrust({
		roomId: 'room1', selfId: 'self', identity, certificate: null, selfBound,
		keyring: { see: async () => {} }, seen, panel: { show: (code) => shown.push(code) },
		members: () => members, fingerprintOf: () => null, warn: () => {},
	});
	return { trust, shown };
}

test('chat authors are verified by their bound key, former members by the remembered one', () => {
	const seen = new Map([['alice', { key: 'aliceBefore', fingerprint: '' }], ['gone', { key: 'goneKey', fingerprint: '' }], ['bob', { key: 'bobBefore', fingerprint: '' }]]);
	const { trust } = roomTrust({ members: [{ id: 'alice', name: 'A', key: 'aliceNow' }, { id: 'bob', name: 'B' }], seen });
	const cases = [
		['ourselves', 'self', ['selfKey']],
		['a member with a bound key: that key only', 'alice', ['aliceNow']],
		['a member with no key bound: none, not the remembered one', 'bob', []],
		['a former member: the remembered key', 'gone', ['goneKey']],
		['someone never seen', 'stranger', []],
	];
	for (const [what, author, want] of cases) {
		assert.deepEqual(trust.keysOf(author), want, what);
	}
	assert.deepEqual(roomTrust({ identity: null }).trust.keysOf('self'), [], 'no identity key: none for ourselves');
});

test('our entry in the safety code follows whether a key is bound to us now', async () => {
	let bound = false;
	const { trust, shown } = roomTrust({ selfBound: () => bound });
	for (const now of [false, true, false]) {
		bound = now;
		trust.update();
		await trust.running;
	}
	const unbound = await safetyCode([{ id: 'self', key: '', fingerprint: '' }]);
	const withKey = await safetyCode([{ id: 'self', key: 'selfKey', fingerprint: '' }]);
	assert.notEqual(unbound, withKey);
	assert.deepEqual(shown, [unbound, withKey, unbound]);
});

test('a deferred session keeps its offer and its candidates, in order, and a newer session replaces it', () => {
	// The limiter part of a Mesh needs no peer connection: only the
	// streams it makes up front, which node has not.
	globalThis.MediaStream ??= /** @type {any} */ (class {});
	const mesh = new Mesh({ selfId: 'self', signaller: { send: () => {} }, sessions: new SessionLimiter({ burst: 1, refillMs: 60_000, now: () => 0 }) });
	assert.equal(mesh.sessions.take('p'), 0, 'the burst, spent');
	// What the mesh then handles, seen instead of handled.
	const handled = [];
	mesh.handleSignal = (from, data) => handled.push(data);
	const offer = { sid: 's1', description: { type: 'offer', sdp: 'v=0' } };
	const candidates = Array.from({ length: DEFERRED_SIGNALS + 5 }, (_, i) => ({ sid: 's1', candidate: { candidate: `c${i}` } }));
	const fresh = (data) => mesh.mayStart('p', data.sid, data);
	assert.equal(fresh(offer), false, 'over the limit: deferred');
	for (const c of candidates) {
		fresh(c);
	}
	mesh.resumeDeferred('p');
	assert.deepEqual(handled, [offer, ...candidates.slice(0, DEFERRED_SIGNALS - 1)], 'the offer first, then the candidates, bounded');

	handled.length = 0;
	const newer = { sid: 's2', hello: true };
	fresh(offer);
	fresh(candidates[0]);
	fresh(newer);
	mesh.resumeDeferred('p');
	assert.deepEqual(handled, [newer], 'a newer session replaces the older one');
	mesh.close();
});

test('a keyring whose storage never answers fails in a bounded time, and what was seen is then empty', async () => {
	const never = () => new Promise(() => {});
	const hung = { get: never, put: never, list: never, forgetRoom: never, forgetAll: never };
	const ring = new Keyring(hung, { waitMs: 20, makeCertificate: never });
	const warn = console.warn;
	console.warn = () => {};
	try {
		await assert.rejects(ring.identity('r', 'm'), /not ready within 20 ms/, 'identity');
		await assert.rejects(ring.certificate('r', 'm'), /not ready within 20 ms/, 'certificate');
		await assert.rejects(ring.keep('r', 'm', await ring.fresh()), /not ready within 20 ms/, 'keep');
		assert.deepEqual(await ring.seen('r'), new Map(), 'seen');
	} finally {
		console.warn = warn;
	}
});
