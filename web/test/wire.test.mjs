// Tests of web/static/js/wire.js: the checks of what peers send, and the
// per-peer budgets, the framing. Run: node --test web/test/
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
	MAX_CHANNEL_MESSAGE, PeerLimiter, TokenBucket, isId, isIntIn, isShowableTime, isSig, isText, lengthPrefixed, parseChannelMessage,
} from '../static/js/wire.js';

test('parseChannelMessage takes a JSON object with a short string type, and nothing else', () => {
	const cases = [
		['{"type":"chat.msg","id":"x"}', { type: 'chat.msg', id: 'x' }],
		['{"type":"x"}', { type: 'x' }],
		['not json', null],
		['[1,2]', null],
		['null', null],
		['"chat.msg"', null],
		['{"type":7}', null],
		['{"type":""}', null],
		[`{"type":"${'t'.repeat(33)}"}`, null],
		['{}', null],
		[`{"type":"x","pad":"${'a'.repeat(MAX_CHANNEL_MESSAGE)}"}`, null],
		[42, null],
		[undefined, null],
		[new ArrayBuffer(8), null],
	];
	for (const [raw, want] of cases) {
		assert.deepEqual(parseChannelMessage(raw), want, `parse ${String(raw).slice(0, 40)}`);
	}
});

test('field checks refuse wrong types, ranges and lengths', () => {
	assert.ok(isId('abc_DEF-123'));
	for (const v of ['', 'a'.repeat(65), 'a b', 'é', 7, null, {}, ['a']]) {
		assert.equal(isId(v), false, `id ${JSON.stringify(v)}`);
	}
	assert.ok(isSig('A'.repeat(86)));
	for (const v of ['A'.repeat(85), 'A'.repeat(87), `${'A'.repeat(85)}=`, `${'A'.repeat(85)}+`, 1]) {
		assert.equal(isSig(v), false, `sig ${JSON.stringify(v)}`);
	}
	assert.ok(isIntIn(5, 1, 5));
	for (const v of [0, 6, 1.5, NaN, Infinity, '3', 2 ** 53, null]) {
		assert.equal(isIntIn(v, 1, 5), false, `int ${String(v)}`);
	}
	assert.ok(isShowableTime(Date.UTC(2026, 11, 8)));
	for (const v of [1e300, -1, 8.64e15 + 1, 2 ** 53, NaN, '0']) {
		assert.equal(isShowableTime(v), false, `time ${String(v)}`);
	}
	assert.ok(isText('hello\n\tworld', 2000));
	for (const v of ['', '   \n', 'bell\u0007', 'rtl\u202e', 'x'.repeat(11), 5, null]) {
		assert.equal(isText(v, 10), false, `text ${JSON.stringify(v)}`);
	}
	assert.ok(isText('🚀'.repeat(10), 10), 'code points, not UTF-16 units');
});

test('a token bucket lets a burst through, then its rate', () => {
	let now = 0;
	const b = new TokenBucket(10, 5, () => now);
	let passed = 0;
	for (let i = 0; i < 100; i++) {
		passed += b.take(1) ? 1 : 0;
	}
	assert.equal(passed, 5);
	now += 1000;
	passed = 0;
	for (let i = 0; i < 100; i++) {
		passed += b.take(1) ? 1 : 0;
	}
	assert.equal(passed, 5, 'refilled up to the burst, not beyond');
	now += 200;
	assert.ok(b.take(2));
	assert.equal(b.take(1), false);
});

test('a token bucket says how long until it has enough, and when it is full again', () => {
	let now = 0;
	const b = new TokenBucket(2, 4, () => now);
	assert.ok(b.full(), 'a new bucket is full');
	assert.equal(b.wait(4), 0);
	assert.ok(b.take(4));
	assert.equal(b.full(), false);
	assert.equal(b.wait(1), 500, 'one unit at 2 a second');
	now = 500;
	assert.equal(b.wait(1), 0);
	assert.equal(b.wait(3), 1000);
	now = 2000;
	assert.ok(b.full(), 'refilled to the burst');
});

test('a peer limiter bounds messages and volume per peer, each peer on its own', () => {
	let now = 0;
	const l = new PeerLimiter({ messages: 10, messageBurst: 3, units: 100, unitBurst: 100 }, () => now);
	assert.deepEqual([1, 2, 3, 4].map(() => l.allow('a', 1)), [true, true, true, false], 'messages');
	assert.ok(l.allow('b', 100), 'another peer has its own budget');
	assert.equal(l.allow('b', 1), false, 'volume');
	now += 100;
	assert.ok(l.allow('a', 1), 'one message refilled');
	const c = new PeerLimiter({ messages: 1, messageBurst: 1, units: 1000, unitBurst: 1000 }, () => now);
	assert.ok(c.allow('c', 10));
	assert.equal(c.allow('c', 10), false);
	now += 1000;
	assert.ok(c.allow('c', 990), 'a message refused for its count takes no volume');
	assert.deepEqual([c.allowed, c.refused], [2, 1], 'what was let through and refused is counted');
});

test('length-prefixed fields are a 4-byte big-endian UTF-8 length, then the bytes', () => {
	assert.deepEqual([...lengthPrefixed(['ab', '', 'é'])], [0, 0, 0, 2, 0x61, 0x62, 0, 0, 0, 0, 0, 0, 0, 2, 0xc3, 0xa9]);
	// Moving a character across a boundary changes the bytes.
	assert.notDeepEqual(lengthPrefixed(['ab', 'c']), lengthPrefixed(['a', 'bc']));
});
