// Tests of web/static/js/chat.js on its own: signatures (real ECDSA P-256
// keys, WebCrypto), history, ordering bounds, budgets, retention, hostile
// fields and links. Run: node --test web/test/
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
	ADOPT_JUMP, Chat, HISTORY_LIMIT, HISTORY_WINDOW_MS, MAX_LAMPORT, compareMessages, signedBytes, splitLinks,
} from '../static/js/chat.js';

const ROOM = 'room1';
const ECDSA = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGN = { name: 'ECDSA', hash: 'SHA-256' };

/** @param {Uint8Array} b */
const b64url = (b) => Buffer.from(b).toString('base64url');

/**
 * Identity keys for members, and a ChatSigner for each as trust.js gives
 * it: it signs with its own key and verifies with the keys it knows.
 */
class Keys {
	constructor() {
		/** @type {Map<string, CryptoKeyPair>} */
		this.pairs = new Map();
	}

	async add(id) {
		this.pairs.set(id, await crypto.subtle.generateKey(ECDSA, false, ['sign', 'verify']));
	}

	/** A raw signature by id's key over a message's signed bytes. */
	async sign(id, m, room = ROOM) {
		const sig = await crypto.subtle.sign(SIGN, this.pairs.get(id).privateKey, signedBytes(room, m));
		return b64url(new Uint8Array(sig));
	}

	signer(self) {
		return {
			sign: async (bytes) => b64url(new Uint8Array(await crypto.subtle.sign(SIGN, this.pairs.get(self).privateKey, bytes))),
			verify: async (author, bytes, sig) => {
				const pair = this.pairs.get(author);
				return !!pair && crypto.subtle.verify(SIGN, pair.publicKey, Buffer.from(sig, 'base64url'), bytes);
			},
		};
	}
}

/** A transport that records what is sent and lets a test wait for it. */
class Wire {
	constructor() {
		this.sent = [];
		this.waiters = [];
	}

	send(to, data) {
		this.sent.push({ to, data });
		this.waiters = this.waiters.filter((w) => !w());
		return true;
	}

	broadcast(data) {
		return this.send('*', data) ? ['*'] : [];
	}

	/** Resolves once something matching pred has been sent. */
	until(pred) {
		return new Promise((resolve) => {
			const check = () => {
				const hit = this.sent.find(pred);
				if (hit) {
					resolve(hit);
				}
				return !!hit;
			};
			if (!check()) {
				this.waiters.push(check);
			}
		});
	}
}

let seq = 0;
/** A signed chat.msg by author, as its author would send it. */
async function message(keys, author, fields = {}) {
	const m = { id: `m${++seq}`, author, lamport: 1, text: 'hi', time: 1_700_000_000_000, ...fields };
	return { ...m, sig: fields.sig ?? await keys.sign(author, m) };
}

/** The live form of a message: no author field (the sender is the author). */
function live({ author: _, ...rest }) {
	return { type: 'chat.msg', ...rest };
}

async function setup(...others) {
	const keys = new Keys();
	for (const id of ['self', ...others]) {
		await keys.add(id);
	}
	const wire = new Wire();
	let now = 0;
	const clock = { advance: (ms) => { now += ms; } };
	const chat = new Chat({ selfId: 'self', roomId: ROOM, signer: keys.signer('self'), transport: wire, now: () => now });
	return { keys, wire, chat, clock };
}

test('signedBytes is the length-prefixed concatenation of contract B', () => {
	const got = signedBytes('R', { author: 'A', id: 'I', lamport: 12, time: 34, text: 'é' });
	const fields = ['lepeerchat.chat.v1', 'R', 'A', 'I', '12', '34', 'é'].map((f) => Buffer.from(f, 'utf8'));
	const want = Buffer.concat(fields.flatMap((f) => {
		const n = Buffer.alloc(4);
		n.writeUInt32BE(f.length);
		return [n, f];
	}));
	assert.deepEqual(Buffer.from(got), want);
});

test('own messages are signed before they are broadcast, and another member accepts them', async () => {
	const keys = new Keys();
	await keys.add('alice');
	await keys.add('bob');
	const aWire = new Wire();
	const alice = new Chat({ selfId: 'alice', roomId: ROOM, signer: keys.signer('alice'), transport: aWire });
	const bob = new Chat({ selfId: 'bob', roomId: ROOM, signer: keys.signer('bob'), transport: new Wire() });
	const m = alice.send('hello\nthere');
	assert.equal(m.own, true);
	assert.equal(alice.messages.length, 1, 'shown at once');
	const { data } = await aWire.until((s) => s.data.type === 'chat.msg');
	assert.match(data.sig, /^[A-Za-z0-9_-]{86}$/);
	bob.handleMessage('alice', data);
	await bob.idle();
	assert.deepEqual(bob.messages.map((x) => [x.author, x.text, x.own, x.relayedBy]), [['alice', 'hello\nthere', false, '']]);
	assert.equal(bob.clock, 1);

	// The same message signed for another room does not verify here.
	const other = await message(keys, 'alice', { sig: await keys.sign('alice', { id: 'x1', author: 'alice', lamport: 2, text: 'hi', time: 0 }, 'room2'), id: 'x1', lamport: 2, time: 0 });
	bob.handleMessage('alice', live(other));
	await bob.idle();
	assert.equal(bob.stats.dropped.unverified, 1);
});

test('a live message that does not verify is dropped and counted, never shown', async () => {
	const { keys, chat } = await setup('alice', 'mallory');
	const cases = [
		['signed by another member', await message(keys, 'mallory'), 'alice'],
		['text changed after signing', { ...await message(keys, 'alice'), text: 'changed' }, 'alice'],
		['lamport changed after signing', { ...await message(keys, 'alice', { lamport: 3 }), lamport: 4 }, 'alice'],
		['by a member whose key is unknown', await message(keys, 'alice'), 'stranger'],
		['a well-formed signature of nothing', { ...await message(keys, 'alice'), sig: 'A'.repeat(86) }, 'alice'],
	];
	for (const [what, m, from] of cases) {
		chat.handleMessage(from, live(m));
		await chat.idle();
		assert.equal(chat.messages.length, 0, what);
	}
	assert.equal(chat.stats.dropped.unverified, cases.length);
	assert.equal(chat.stats.accepted, 0);
});

test('a history is taken only just after the channel opened, once, entry by entry', async () => {
	const { keys, chat, clock } = await setup('alice', 'bob', 'mallory');
	const real = await message(keys, 'alice', { text: 'real', lamport: 2 });
	// Before the channel opened: dropped.
	chat.handleMessage('bob', { type: 'chat.history', messages: [real] });
	await chat.idle();
	assert.equal(chat.messages.length, 0);
	assert.equal(chat.stats.dropped.history, 1);

	chat.peerOpened('bob');
	const forgedAlice = { ...await message(keys, 'mallory', { text: 'alice never said this' }), author: 'alice' };
	const forgedSelf = { ...await message(keys, 'mallory', { text: 'you never said this' }), author: 'self' };
	chat.handleMessage('bob', { type: 'chat.history', messages: [forgedAlice, real, forgedSelf, { id: 7 }, 'junk'] });
	await chat.idle();
	assert.deepEqual(chat.messages.map((m) => [m.text, m.own, m.relayedBy]), [['real', false, 'bob']], 'the entry that verifies is kept, relayed by bob');
	assert.equal(chat.stats.dropped.unverified, 2);
	assert.equal(chat.stats.dropped.bad, 2);

	// Once bob says anything else, its window is closed.
	chat.handleMessage('bob', live(await message(keys, 'bob', { text: 'hello', lamport: 3 })));
	chat.handleMessage('bob', { type: 'chat.history', messages: [await message(keys, 'alice', { text: 'late', lamport: 4 })] });
	await chat.idle();
	assert.deepEqual(chat.messages.map((m) => m.text), ['real', 'hello']);
	assert.equal(chat.stats.dropped.history, 2);

	// A new opening opens a new window, for HISTORY_LIMIT entries in all.
	chat.peerOpened('bob');
	const many = [];
	for (let i = 0; i < HISTORY_LIMIT + 5; i++) {
		many.push(await message(keys, 'alice', { text: `h${i}`, lamport: 10 + i }));
	}
	chat.handleMessage('bob', { type: 'chat.history', messages: many.slice(0, 100) });
	chat.handleMessage('bob', { type: 'chat.history', messages: many.slice(100) });
	await chat.idle();
	assert.equal(chat.messages.length, 2 + HISTORY_LIMIT);
	assert.equal(chat.stats.dropped.history, 2 + 5);

	// A window closes by time too, when the peer says nothing else.
	chat.peerOpened('alice');
	clock.advance(HISTORY_WINDOW_MS - 1);
	chat.handleMessage('alice', { type: 'chat.history', messages: [await message(keys, 'alice', { text: 'in time', lamport: 300 })] });
	clock.advance(2);
	chat.handleMessage('alice', { type: 'chat.history', messages: [await message(keys, 'alice', { text: 'too late', lamport: 301 })] });
	await chat.idle();
	assert.equal(chat.messages.at(-1)?.text, 'in time');
	assert.equal(chat.stats.dropped.history, 2 + 5 + 1);
});

test('a message relayed, then handed by its author too, is no longer shown as relayed', async () => {
	const { keys, chat } = await setup('alice', 'bob');
	chat.peerOpened('bob');
	chat.peerOpened('alice');
	const m = await message(keys, 'alice', { text: 'both ways' });
	const updated = [];
	chat.on('updated', (ev) => updated.push(ev.detail.message.id));
	chat.handleMessage('bob', { type: 'chat.history', messages: [m] });
	chat.handleMessage('alice', { type: 'chat.history', messages: [m] });
	await chat.idle();
	assert.deepEqual(chat.messages.map((x) => [x.text, x.relayedBy]), [['both ways', '']], 'while in flight');
	const n = await message(keys, 'alice', { text: 'later', lamport: 2 });
	chat.handleMessage('bob', { type: 'chat.history', messages: [n] });
	await chat.idle();
	assert.equal(chat.messages[1].relayedBy, 'bob');
	chat.handleMessage('alice', { type: 'chat.history', messages: [{ ...n, text: 'changed' }] });
	chat.handleMessage('alice', { type: 'chat.history', messages: [n] });
	assert.deepEqual(chat.messages.map((x) => [x.text, x.relayedBy]), [['both ways', ''], ['later', '']], 'once held');
	assert.deepEqual(updated, [n.id]);
});

test('a message id reused by another author is another message: it hides nothing', async () => {
	const { keys, chat } = await setup('victim', 'mallory');
	const removed = [];
	chat.on('removed', (ev) => removed.push(...ev.detail.keys));
	chat.peerOpened('mallory');
	chat.peerOpened('victim');
	const real = await message(keys, 'victim', { id: 'X123', lamport: 5, text: 'the real words' });
	const squat = await message(keys, 'mallory', { id: 'X123', lamport: 5, text: '.' });
	chat.handleMessage('mallory', { type: 'chat.history', messages: [squat] });
	await chat.idle();
	chat.handleMessage('victim', { type: 'chat.history', messages: [real] });
	await chat.idle();
	const live2 = await message(keys, 'victim', { id: 'Y456', lamport: 6, text: 'live words' });
	chat.handleMessage('mallory', live(await message(keys, 'mallory', { id: 'Y456', lamport: 6, text: '..' })));
	chat.handleMessage('victim', live(live2));
	await chat.idle();
	assert.deepEqual(chat.messages.map((m) => [m.author, m.text]),
		[['mallory', '.'], ['victim', 'the real words'], ['mallory', '..'], ['victim', 'live words']]);

	// Seen marks count for our own message only, not for one of the same id.
	const mine = chat.send('mine');
	await chat.outgoing;
	chat.handleMessage('mallory', live(await message(keys, 'mallory', { id: mine.id, lamport: 9 })));
	await chat.idle();
	chat.handleMessage('victim', { type: 'chat.seen', ids: [mine.id] });
	assert.deepEqual([...mine.seenBy], ['victim']);
	assert.equal(chat.messages.length, 6);

	// Forgetting one forgets only that author's.
	chat.forget([chat.messages[0]]);
	assert.deepEqual(removed, ['mallory X123']);
	assert.ok(chat.messages.some((m) => m.author === 'victim' && m.id === 'X123'));
});

/** The order of the P-256 group: (r, n − s) is a valid signature too. */
const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

/** The other valid form of a raw r‖s signature (ECDSA malleability). */
function malleate(sig) {
	const b = Buffer.from(sig, 'base64url');
	const s = BigInt(`0x${b.subarray(32).toString('hex')}`);
	const t = Buffer.from((P256_N - s).toString(16).padStart(64, '0'), 'hex');
	return b64url(Buffer.concat([b.subarray(0, 32), t]));
}

test('a relayed message handed by its author with the other form of its signature is no longer shown as relayed', async () => {
	const { keys, chat } = await setup('alice', 'bob');
	chat.peerOpened('bob');
	chat.peerOpened('alice');
	const updated = [];
	chat.on('updated', (ev) => updated.push(ev.detail.message.id));
	const m = await message(keys, 'alice', { text: 'relayed first' });
	chat.handleMessage('bob', { type: 'chat.history', messages: [m] });
	await chat.idle();
	assert.equal(chat.messages[0].relayedBy, 'bob');
	const other = { ...m, sig: malleate(m.sig) };
	assert.notEqual(other.sig, m.sig);
	// Relayed again, or by its author with other content: still relayed.
	chat.handleMessage('bob', { type: 'chat.history', messages: [other] });
	chat.handleMessage('alice', { type: 'chat.history', messages: [{ ...other, text: 'changed' }] });
	await chat.idle();
	assert.equal(chat.messages[0].relayedBy, 'bob');
	chat.handleMessage('alice', live(other));
	await chat.idle();
	assert.deepEqual(chat.messages.map((x) => [x.text, x.relayedBy]), [['relayed first', '']]);
	assert.deepEqual(updated, [m.id]);
	assert.equal(chat.stats.dropped.unverified, 0);
});

test('our own messages come back as ours only with our own signature', async () => {
	const { keys, chat } = await setup('bob', 'mallory');
	chat.peerOpened('bob');
	const mine = await message(keys, 'self', { text: 'mine, from before a reload' });
	const notMine = { ...await message(keys, 'mallory', { text: 'You: I agree' }), author: 'self' };
	chat.handleMessage('bob', { type: 'chat.history', messages: [mine, notMine] });
	await chat.idle();
	assert.deepEqual(chat.messages.map((m) => [m.text, m.own]), [['mine, from before a reload', true]]);
});

test('a history handed on keeps signatures, and the receiving side verifies each', async () => {
	const keys = new Keys();
	for (const id of ['alice', 'bob', 'carol']) {
		await keys.add(id);
	}
	const bobWire = new Wire();
	const bob = new Chat({ selfId: 'bob', roomId: ROOM, signer: keys.signer('bob'), transport: bobWire });
	const carol = new Chat({ selfId: 'carol', roomId: ROOM, signer: keys.signer('carol'), transport: new Wire() });
	bob.handleMessage('alice', live(await message(keys, 'alice', { text: 'from alice' })));
	await bob.idle();
	bob.send('from bob');
	await bob.outgoing;
	bob.peerOpened('carol');
	const { data } = await bobWire.until((s) => s.to === 'carol' && s.data.type === 'chat.history');
	carol.peerOpened('bob');
	carol.handleMessage('bob', data);
	await carol.idle();
	assert.deepEqual(carol.messages.map((m) => [m.text, m.relayedBy]), [['from alice', 'bob'], ['from bob', '']]);
});

test('a poison timestamp is refused, and the clock stays in its safe range', async () => {
	const { keys, chat, clock } = await setup('mallory');
	for (const [what, lamport] of [['0', 0], ['2^53 − 1', 2 ** 53 - 1], ['2^53', 2 ** 53], ['beyond MAX_LAMPORT', MAX_LAMPORT + 1]]) {
		const before = chat.stats.dropped.bad;
		chat.handleMessage('mallory', live(await message(keys, 'mallory', { lamport })));
		await chat.idle();
		assert.equal(chat.stats.dropped.bad, before + 1, what);
		clock.advance(1000);
	}
	assert.equal(chat.clock, 0);

	// At the end of the range the clock stops: sending says so, nothing wraps.
	chat.clock = MAX_LAMPORT - 3;
	chat.handleMessage('mallory', live(await message(keys, 'mallory', { lamport: MAX_LAMPORT })));
	await chat.idle();
	assert.equal(chat.clock, MAX_LAMPORT);
	assert.throws(() => chat.send('one more'), RangeError);
});

test('one far-ahead message, live or in a history, moves a clock by ADOPT_JUMP at most, and its holder stays heard', async () => {
	const keys = new Keys();
	for (const id of ['victim', 'carol', 'mallory']) {
		await keys.add(id);
	}
	const cases = [
		['live, a jump ahead of the clock', true, ADOPT_JUMP + 1],
		['live, at the end of the range', true, MAX_LAMPORT],
		['in a history to a member that has seen nothing', false, 2 ** 40],
		['in a history, at the end of the range', false, MAX_LAMPORT],
	];
	for (const [what, isLive, lamport] of cases) {
		const vWire = new Wire();
		const victim = new Chat({ selfId: 'victim', roomId: ROOM, signer: keys.signer('victim'), transport: vWire });
		const carol = new Chat({ selfId: 'carol', roomId: ROOM, signer: keys.signer('carol'), transport: new Wire() });
		carol.send('carol first');
		await carol.outgoing;
		const poison = await message(keys, 'mallory', { lamport });
		if (isLive) {
			victim.handleMessage('mallory', live(poison));
		} else {
			victim.peerOpened('mallory');
			victim.handleMessage('mallory', { type: 'chat.history', messages: [poison] });
		}
		await victim.idle();
		assert.equal(victim.stats.accepted, 1, `${what}: a validly signed message is kept`);
		assert.equal(victim.clock, ADOPT_JUMP, what);
		victim.send('still heard');
		const { data } = await vWire.until((s) => s.data.type === 'chat.msg');
		assert.equal(data.lamport, ADOPT_JUMP + 1, what);
		carol.handleMessage('victim', data);
		await carol.idle();
		assert.deepEqual(carol.messages.map((m) => m.text), ['carol first', 'still heard'], `${what}: the others still take the victim's messages`);
		assert.equal(carol.clock, ADOPT_JUMP + 1, what);
	}
});

test('a flood of 3,000 messages from one peer is cut to its budget, and the others keep their history', async () => {
	const { keys, chat, clock } = await setup('alice', 'mallory');
	chat.handleMessage('alice', live(await message(keys, 'alice', { text: 'before the flood' })));
	await chat.idle();
	const flood = [];
	for (let i = 0; i < 3000; i++) {
		flood.push(live(await message(keys, 'mallory', { text: `spam ${i}`, lamport: 2 + i })));
	}
	for (const m of flood) {
		chat.handleMessage('mallory', m);
	}
	await chat.idle();
	const spam = chat.messages.filter((m) => m.author === 'mallory').length;
	assert.equal(spam, 40, 'the burst of the budget');
	assert.equal(chat.stats.dropped.rate, 3000 - 40);
	clock.advance(1000);
	for (const m of flood.slice(0, 20)) {
		chat.handleMessage('mallory', { ...m, id: `${m.id}b` });
	}
	assert.equal(chat.stats.dropped.rate, 3000 - 40 + 10, 'then 10 a second');
	chat.handleMessage('alice', live(await message(keys, 'alice', { text: 'after the flood', lamport: 5000 })));
	await chat.idle();
	assert.ok(chat.messages.some((m) => m.text === 'before the flood'));
	assert.ok(chat.messages.some((m) => m.text === 'after the flood'), 'another peer has its own budget');
});

test('memory is kept per author: one prolific author cannot evict the others', async () => {
	const keys = new Keys();
	for (const id of ['self', 'alice', 'bob', 'mallory']) {
		await keys.add(id);
	}
	const chat = new Chat({ selfId: 'self', roomId: ROOM, signer: keys.signer('self'), transport: new Wire(), keep: 50, historyLimit: 50,
		budget: { messages: 1e9, messageBurst: 1e9, units: 1e12, unitBurst: 1e12 } });
	for (const [author, n] of [['alice', 5], ['bob', 5]]) {
		for (let i = 0; i < n; i++) {
			chat.handleMessage(author, live(await message(keys, author, { text: `${author} ${i}`, lamport: 1 + i })));
		}
	}
	for (let i = 0; i < 500; i++) {
		chat.handleMessage('mallory', live(await message(keys, 'mallory', { text: `spam ${i}`, lamport: 10 + i })));
	}
	await chat.idle();
	assert.equal(chat.messages.length, 50);
	assert.equal(chat.messages.filter((m) => m.author === 'alice').length, 5);
	assert.equal(chat.messages.filter((m) => m.author === 'bob').length, 5);
	assert.equal(chat.messages.filter((m) => m.author === 'mallory').length, 40);
	assert.deepEqual(chat.messages, [...chat.messages].sort(compareMessages));
});

test('messages verified out of order, and copies in flight, end sorted and once each', async () => {
	const { keys, chat } = await setup('alice', 'bob', 'mallory');
	chat.peerOpened('bob');
	const ms = [];
	for (let i = 0; i < 30; i++) {
		ms.push(await message(keys, 'alice', { text: `a${i}`, lamport: 30 - i }));
	}
	// A forged copy of the first message comes first, under its id: the
	// real one, right behind it, is still taken.
	const forged = { ...ms[0], text: 'forged', sig: (await message(keys, 'mallory', { id: ms[0].id })).sig };
	chat.handleMessage('bob', { type: 'chat.history', messages: [forged, ...ms, ...ms] });
	chat.handleMessage('alice', live(ms[1]));
	await chat.idle();
	assert.equal(chat.messages.length, 30);
	assert.deepEqual(chat.messages.map((m) => m.lamport), Array.from({ length: 30 }, (_, i) => i + 1));
	assert.ok(!chat.messages.some((m) => m.text === 'forged'));
	assert.equal(chat.clock, 30, 'the clock advanced on accepted messages only');
});

test('acknowledgements go as one chat.seen per author per batch', async () => {
	const { keys, chat, wire } = await setup('alice');
	const ids = [];
	for (let i = 0; i < 30; i++) {
		const m = await message(keys, 'alice', { lamport: 1 + i });
		ids.push(m.id);
		chat.handleMessage('alice', live(m));
	}
	await chat.idle();
	const { to, data } = await wire.until((s) => s.data.type === 'chat.seen');
	assert.equal(to, 'alice');
	assert.deepEqual([...data.ids].sort(), [...ids].sort());
	assert.equal(wire.sent.filter((s) => s.data.type === 'chat.seen').length, 1);
});

test('seen marks count only for our own messages and only once per peer', async () => {
	const { keys, chat } = await setup('alice');
	const mine = chat.send('mine');
	await chat.outgoing;
	chat.handleMessage('alice', live(await message(keys, 'alice', { lamport: 2 })));
	await chat.idle();
	const theirs = chat.messages.find((m) => m.author === 'alice');
	chat.handleMessage('alice', { type: 'chat.seen', ids: [mine.id, mine.id, theirs.id, 5, null] });
	assert.deepEqual([...mine.seenBy], ['alice']);
	assert.equal(theirs.seenBy.size, 0);
	chat.handleMessage('alice', { type: 'chat.seen', ids: Array(201).fill(mine.id) });
	chat.handleMessage('alice', { type: 'chat.seen', ids: 'all' });
	assert.equal(chat.stats.dropped.bad, 2);
});

test('a message that cannot be signed is not sent, and is taken back', async () => {
	const wire = new Wire();
	const chat = new Chat({ selfId: 'self', roomId: ROOM, transport: wire,
		signer: { sign: async () => { throw new Error('no key'); }, verify: async () => false } });
	const failed = new Promise((resolve) => chat.on('failed', (ev) => resolve(ev.detail)));
	const m = chat.send('hello');
	assert.equal((await failed).message, m);
	assert.equal(chat.messages.length, 0);
	assert.equal(wire.sent.length, 0);
});

test('times that are not safe integers are refused, never thrown; odd safe ones still verify', async () => {
	const { keys, chat } = await setup('alice');
	for (const time of [1e300, -Infinity, NaN, 1.5, '1', null]) {
		const m = await message(keys, 'alice');
		assert.doesNotThrow(() => chat.handleMessage('alice', live({ ...m, time })));
	}
	await chat.idle();
	assert.equal(chat.stats.dropped.bad, 6);
	chat.handleMessage('alice', live(await message(keys, 'alice', { time: 9e15 })));
	await chat.idle();
	assert.equal(chat.messages[0]?.time, 9e15, 'shown without a time: beyond what a Date holds');
});

/** A small seeded generator (mulberry32), so that a failure can be replayed. */
function random(seed) {
	return () => {
		seed = (seed + 0x6d2b79f5) | 0;
		let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
		t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
}

test('random and hostile fields never throw and are never accepted', async () => {
	const { keys, chat } = await setup('alice');
	chat.peerOpened('alice');
	const rnd = random(20261208);
	const pick = (xs) => xs[Math.floor(rnd() * xs.length)];
	const values = [undefined, null, true, 0, -1, 1.5, NaN, Infinity, 2 ** 53, 1e300, '', 'x', '1', 'a'.repeat(5000), [], [1], {}, { a: 1 },
		'\u202e', 'bell\u0007', '__proto__', 'A'.repeat(86), 'A'.repeat(85) + '='];
	const good = await message(keys, 'alice', { lamport: 3 });
	const fields = ['id', 'author', 'lamport', 'text', 'time', 'sig'];
	for (let i = 0; i < 2000; i++) {
		const m = { ...good, id: `f${i}` };
		for (const f of fields) {
			if (rnd() < 0.3) {
				m[f] = pick(values);
			}
		}
		const type = pick(['chat.msg', 'chat.history', 'chat.seen', 'chat.other', 'chat.']);
		const data = type === 'chat.history' ? { type, messages: pick([[m], m, 'x', null, [m, m]]) }
			: type === 'chat.seen' ? { type, ids: pick([[m.id], m.id, null, [{}]]) } : { type, ...m };
		if (rnd() < 0.1) {
			data.type = pick(values);
		}
		assert.doesNotThrow(() => chat.handleMessage(pick(['alice', '', 'self', 'bad id!', 7]), data));
	}
	await chat.idle();
	assert.equal(chat.stats.accepted, 0, 'a changed field breaks the signature or the checks');
	assert.equal(chat.messages.length, 0);
});

test('links show the host they really lead to', () => {
	const cases = [
		['plain', 'see https://example.org/page?q=1.', 'https://example.org/page?q=1', undefined],
		['capitals', 'https://EXAMPLE.org/', 'https://example.org/', undefined],
		['user information before the host', 'https://good.example@evil.example/', 'https://evil.example/', 'evil.example'],
		['user and password', 'http://good.example:pw@evil.example:8080/x', 'http://evil.example:8080/x', 'evil.example:8080'],
		['a Cyrillic letter in a Latin name', 'https://bаnk.example/', 'https://xn--bnk-6cd.example/', 'xn--bnk-6cd.example'],
		['a Cyrillic name under a Latin top-level domain', 'https://аррӏе.com/', 'https://xn--80ak6aa92e.com/', 'xn--80ak6aa92e.com'],
		['one script throughout', 'https://пример.рф/', 'https://xn--e1afmkfd.xn--p1ai/', undefined],
		['accented Latin', 'https://bücher.de/', 'https://xn--bcher-kva.de/', undefined],
		['percent-encoded host', 'https://ex%61mple.org/', 'https://example.org/', 'example.org'],
		['a backslash the parser takes for a slash', 'https://evil.example\\@good.example/', 'https://evil.example/@good.example/', undefined],
		['a full-width dot', 'https://good.example．evil.example/', 'https://good.example.evil.example/', 'good.example.evil.example'],
		['an ideographic full stop', 'https://paypal.com。evil.example/', 'https://paypal.com.evil.example/', 'paypal.com.evil.example'],
		['full-width letters', 'https://ｇｏｏｄ.example/', 'https://good.example/', 'good.example'],
	];
	for (const [what, text, href, host] of cases) {
		const link = splitLinks(text).find((p) => p.href);
		assert.ok(link, what);
		assert.equal(link.href, href, what);
		assert.equal(link.host, host, what);
	}
	assert.deepEqual(splitLinks('javascript:alert(1) ftp://x.example/'), [{ text: 'javascript:alert(1) ftp://x.example/' }]);
});
