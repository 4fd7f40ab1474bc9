// The connection test of the room page: tells, in words, whether calls can
// get through this person's network with the STUN/TURN servers the server
// gave their membership (room.iceServers).
//
// How: two peer connections in this page, both allowed relay candidates
// only (iceTransportPolicy "relay"), are connected to each other through
// the TURN server, with the signalling done inside the page; a data channel
// between them carries a few messages there and back, which measures the
// round trip through the relay. Meanwhile a third connection asks the STUN
// server for this network's public address (a server-reflexive candidate):
// the address through which people on other networks may reach this
// browser directly. Nothing but STUN and TURN traffic leaves the page, and
// every connection is closed when the test ends, is stopped, or runs out
// of time.

import { h, replace } from './dom.js';

/** How long a test may take, in milliseconds. */
export const TEST_TIMEOUT_MS = 10_000;

/** How many messages measure the round trip. */
const PINGS = 5;

/**
 * What a test found:
 *   "ok"             relay works (the round trip is in rttMs)
 *   "no-servers"     the server gave no STUN or TURN server at all
 *   "no-turn"        only STUN servers: there is no relay to test
 *   "no-relay"       no relay address was obtained: TURN unreachable,
 *                    blocked, or refusing the credentials
 *   "no-connection"  relay addresses, but nothing went through them
 *   "cancelled"      stopped by the person (or the page went away)
 *   "unsupported"    the browser has no WebRTC
 *   "error"          the browser failed in an unexpected way (see detail)
 * @typedef {'ok' | 'no-servers' | 'no-turn' | 'no-relay' | 'no-connection' | 'cancelled' | 'unsupported' | 'error'} Outcome
 */

/**
 * @typedef {object} TestResult
 * @property {Outcome} outcome
 * @property {number | null} rttMs median round trip through the relay, in
 *   milliseconds, when it works
 * @property {boolean | null} publicAddress whether a public
 *   (server-reflexive) address was found; null when there was no server to
 *   ask or no answer in time
 * @property {string} relay host and port of the first TURN server, or ""
 * @property {string} detail what the browser reported of a failure, or ""
 */

/**
 * The steps of a running test, as reported to onStep.
 * @typedef {'relay' | 'connect' | 'measure' | 'address'} Step
 */

/** @type {Record<Step, string>} */
const STEP_WORDS = {
  relay: 'Reaching the relay server…',
  connect: 'Connecting through the relay…',
  measure: 'Sending test messages through the relay…',
  address: 'Looking up your public address…',
};

const ABORTED = Symbol('aborted');

/**
 * Runs the test. It never rejects: what went wrong is in the outcome.
 * @param {RTCIceServer[]} iceServers
 * @param {{signal?: AbortSignal, timeoutMs?: number, onStep?: (step: Step) => void}} [options]
 *   signal stops the test (outcome "cancelled")
 * @returns {Promise<TestResult>}
 */
export async function runConnectionTest(iceServers, { signal, timeoutMs = TEST_TIMEOUT_MS, onStep = () => {} } = {}) {
  const urls = iceServers.flatMap((s) => (Array.isArray(s.urls) ? s.urls : [s.urls]));
  const turnUrl = urls.find((u) => /^turns?:/i.test(u));
  /** @type {TestResult} */
  const result = { outcome: 'error', rttMs: null, publicAddress: null, relay: turnUrl ? serverOf(turnUrl) : '', detail: '' };
  if (typeof RTCPeerConnection !== 'function') return { ...result, outcome: 'unsupported' };
  if (urls.length === 0) return { ...result, outcome: 'no-servers' };

  // Ends every wait of this run: on time out, on cancel, and at the end.
  const stop = new AbortController();
  let cancelled = false;
  const cancel = () => {
    cancelled = true;
    stop.abort();
  };
  const timer = setTimeout(() => stop.abort(), timeoutMs);
  signal?.addEventListener('abort', cancel, { once: true });
  if (signal?.aborted) cancel();
  /** @type {RTCPeerConnection[]} */
  const pcs = [];
  try {
    // A lookup that fails only leaves the answer unknown.
    const lookup = lookUpPublicAddress(iceServers, pcs, stop.signal).catch(() => null);
    if (!turnUrl) {
      onStep('address');
      result.outcome = 'no-turn';
    } else {
      result.outcome = await relayRoundTrip(iceServers, pcs, stop.signal, onStep, result);
      if (!cancelled && result.outcome === 'ok') onStep('address');
    }
    // The lookup gets whatever time the relay test left.
    const found = await until(lookup, stop.signal);
    result.publicAddress = found === ABORTED ? null : found;
  } catch (err) {
    result.outcome = 'error';
    result.detail = err instanceof Error ? err.message : String(err);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', cancel);
    stop.abort();
    for (const pc of pcs) pc.close();
  }
  if (cancelled) {
    result.outcome = 'cancelled';
    result.rttMs = null;
    result.publicAddress = null;
  }
  return result;
}

/**
 * Connects two relay-only peer connections through the TURN server and
 * measures the round trip of a data channel between them.
 * @param {RTCIceServer[]} iceServers
 * @param {RTCPeerConnection[]} pcs where the connections made are added, for closing
 * @param {AbortSignal} signal
 * @param {(step: Step) => void} onStep
 * @param {TestResult} result receives rttMs and detail
 * @returns {Promise<Outcome>}
 */
async function relayRoundTrip(iceServers, pcs, signal, onStep, result) {
  const config = { iceServers, iceTransportPolicy: /** @type {const} */ ('relay') };
  const a = new RTCPeerConnection(config);
  const b = new RTCPeerConnection(config);
  pcs.push(a, b);
  const listen = { signal };
  /** @type {Set<string>} */
  const errors = new Set();
  const relayed = deferred();
  const gathered = deferred();
  /** Candidates wait until their connection has the other's description. */
  const described = new Map([
    [a, deferred()],
    [b, deferred()],
  ]);
  for (const [pc, other] of [
    [a, b],
    [b, a],
  ]) {
    pc.addEventListener(
      'icecandidate',
      (e) => {
        if (!e.candidate) {
          if (pc === a) gathered.resolve();
          return;
        }
        if (pc === a && candidateType(e.candidate) === 'relay') relayed.resolve();
        const c = e.candidate;
        described
          .get(other)
          ?.promise.then(() => other.addIceCandidate(c))
          .catch(() => {});
      },
      listen,
    );
    pc.addEventListener(
      'icecandidateerror',
      (e) => {
        const ev = /** @type {RTCPeerConnectionIceErrorEvent} */ (e);
        if (/^turns?:/i.test(ev.url)) errors.add(`${ev.errorCode} ${ev.errorText}`.trim());
      },
      listen,
    );
  }
  b.addEventListener(
    'datachannel',
    (e) => {
      const echo = e.channel;
      echo.addEventListener('message', (m) => echo.send(m.data), listen);
    },
    listen,
  );
  const channel = a.createDataChannel('lepeerchat-connection-test');
  const opened = new Promise((resolve) => channel.addEventListener('open', resolve, { once: true, signal }));
  const failed = new Promise((resolve) =>
    a.addEventListener('connectionstatechange', () => a.connectionState === 'failed' && resolve(undefined), listen),
  );

  const explain = () => {
    result.detail = [...errors].join('; ');
  };
  onStep('relay');
  const offerAnswer = async () => {
    await a.setLocalDescription();
    await b.setRemoteDescription(/** @type {RTCSessionDescription} */ (a.localDescription));
    described.get(b)?.resolve();
    await b.setLocalDescription();
    await a.setRemoteDescription(/** @type {RTCSessionDescription} */ (b.localDescription));
    described.get(a)?.resolve();
  };
  if ((await until(offerAnswer(), signal)) === ABORTED) {
    explain();
    return 'no-relay';
  }
  const first = await until(Promise.race([relayed.promise.then(() => true), gathered.promise.then(() => false)]), signal);
  if (first !== true) {
    explain();
    return 'no-relay';
  }

  onStep('connect');
  const open = await until(Promise.race([opened.then(() => true), failed.then(() => false)]), signal);
  if (open !== true) {
    explain();
    return 'no-connection';
  }

  onStep('measure');
  /** @type {number[]} */
  const rtts = [];
  for (let i = 0; i < PINGS; i++) {
    const id = String(i);
    const back = new Promise((resolve) =>
      channel.addEventListener('message', (m) => m.data === id && resolve(undefined), listen),
    );
    const sent = performance.now();
    channel.send(id);
    if ((await until(back, signal)) === ABORTED) {
      explain();
      return 'no-connection';
    }
    rtts.push(performance.now() - sent);
  }
  rtts.sort((x, y) => x - y);
  result.rttMs = Math.max(1, Math.round(rtts[Math.floor(rtts.length / 2)]));
  return 'ok';
}

/**
 * Asks the STUN servers (or, without any, the TURN servers, which answer
 * STUN too) for this network's public address. Resolves true when a
 * server-reflexive candidate comes, false when gathering ends without one.
 * @param {RTCIceServer[]} iceServers
 * @param {RTCPeerConnection[]} pcs
 * @param {AbortSignal} signal
 * @returns {Promise<boolean>}
 */
async function lookUpPublicAddress(iceServers, pcs, signal) {
  const all = iceServers.flatMap((s) => (Array.isArray(s.urls) ? s.urls : [s.urls]));
  let stun = all.filter((u) => /^stuns?:/i.test(u));
  if (stun.length === 0) {
    stun = all.filter((u) => /^turn:/i.test(u)).map((u) => u.replace(/^turn:/i, 'stun:').replace(/\?.*$/, ''));
  }
  const pc = new RTCPeerConnection({ iceServers: [{ urls: [...new Set(stun)] }] });
  pcs.push(pc);
  const found = new Promise((resolve) =>
    pc.addEventListener(
      'icecandidate',
      (e) => {
        if (!e.candidate) resolve(false);
        else if (candidateType(e.candidate) === 'srflx') resolve(true);
      },
      { signal },
    ),
  );
  pc.createDataChannel('lepeerchat-address-lookup');
  await pc.setLocalDescription();
  return /** @type {Promise<boolean>} */ (found);
}

/**
 * A candidate's type ("host", "srflx", "prflx", "relay"), also where the
 * browser does not fill in RTCIceCandidate.type.
 * @param {RTCIceCandidate} c
 * @returns {string}
 */
function candidateType(c) {
  return c.type ?? / typ (\w+)/.exec(c.candidate)?.[1] ?? '';
}

/**
 * The host and port of a STUN/TURN URL ("turn:example.org:3478?transport=udp").
 * @param {string} url
 * @returns {string}
 */
function serverOf(url) {
  return url.replace(/^[a-z]+:/i, '').replace(/\?.*$/, '');
}

/**
 * Waits for p, or for signal's abort: then resolves to ABORTED.
 * @template T
 * @param {Promise<T>} p
 * @param {AbortSignal} signal
 * @returns {Promise<T | typeof ABORTED>}
 */
function until(p, signal) {
  if (signal.aborted) return Promise.resolve(ABORTED);
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve(ABORTED);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** @returns {{promise: Promise<void>, resolve: () => void}} */
function deferred() {
  /** @type {() => void} */
  let resolve = () => {};
  const promise = new Promise((r) => {
    resolve = () => r(undefined);
  });
  return { promise, resolve };
}

/**
 * A result in words: a headline, what it means, and how likely direct
 * connections are (a verdict and its reason; null when not looked into).
 * @param {TestResult} r
 * @returns {{title: string, text: string, direct: {verdict: string, why: string} | null, tone: 'ok' | 'warn' | 'bad' | 'neutral'}}
 */
export function describeResult(r) {
  const at = r.relay ? ` at ${r.relay}` : '';
  /** @type {{title: string, text: string, tone: 'ok' | 'warn' | 'bad' | 'neutral'}} */
  let d;
  switch (r.outcome) {
    case 'ok':
      d = {
        title: 'Relay works from your network',
        text: `When a direct connection is blocked, your calls go through this server's relay. Round trip through the relay: ${r.rttMs}\u00a0ms.`,
        tone: 'ok',
      };
      break;
    case 'no-servers':
      d = {
        title: 'Relay not available',
        text: 'This server offers no relay (TURN) and no address lookup (STUN). You can talk only with people your browser reaches directly, usually those on your own network. Whoever runs this server can turn its relay on.',
        tone: 'warn',
      };
      break;
    case 'no-turn':
      d = {
        title: 'Relay not available',
        text: 'This server offers no relay (TURN), only an address lookup (STUN). People behind strict firewalls will not be able to connect with you. Whoever runs this server can turn its relay on.',
        tone: 'warn',
      };
      break;
    case 'no-relay':
      d = {
        title: 'Relay not reachable',
        text: `Your browser could not reach the relay${at}: a firewall on your network or the server's may block it, or the relay is down. Calls connect only where a direct connection is possible.`,
        tone: 'bad',
      };
      break;
    case 'no-connection':
      d = {
        title: 'Relay reached, but nothing went through it',
        text: `Your browser got an address on the relay${at}, but the test messages did not get through it in time. A firewall may block the relay's ports.`,
        tone: 'bad',
      };
      break;
    case 'cancelled':
      d = { title: 'Test stopped', text: 'Nothing was concluded. Run it again whenever you like.', tone: 'neutral' };
      break;
    case 'unsupported':
      d = { title: 'This browser cannot run the test', text: 'It has no WebRTC, which calls need too.', tone: 'bad' };
      break;
    default:
      d = { title: 'The test could not run', text: 'Your browser stopped it with an error. Try again, or in another browser.', tone: 'bad' };
  }
  let direct = null;
  if (r.publicAddress === true) {
    direct = {
      verdict: 'likely.',
      why: 'Your network showed its public address (STUN), so people on other networks can probably reach you without the relay.',
    };
  } else if (r.publicAddress === false) {
    direct = {
      verdict: 'unlikely beyond your network.',
      why: 'No public address was found for you (STUN), so calls with people elsewhere will probably go through the relay.',
    };
  } else if (r.outcome === 'ok' || r.outcome === 'no-turn' || r.outcome === 'no-relay' || r.outcome === 'no-connection') {
    direct = { verdict: 'unknown.', why: 'The address lookup (STUN) did not answer in time.' };
  }
  return { ...d, direct };
}

/**
 * The connection test's part of the room page: a button that runs the test
 * with the room's current ICE servers (a second press stops it) and a live
 * region that says what it found. The test stops when the room page goes.
 * @param {{iceServers: RTCIceServer[], lifetime: AbortSignal}} room
 * @returns {HTMLElement}
 */
export function connectionTest(room) {
  const button = h('button', { type: 'button', class: 'secondary small', id: 'conn-test-button', 'aria-describedby': 'conn-test-intro' }, 'Test my connection');
  const intro = h('p', { class: 'conn-test-intro', id: 'conn-test-intro' }, 'Check that calls can get through your network.');
  const result = h('div', { class: 'conn-test-result', id: 'conn-test-result', role: 'status', 'aria-live': 'polite' });
  /** @type {AbortController | null} */
  let running = null;

  /**
   * @param {string} title
   * @param {...(string | Node)} lines
   */
  const say = (title, ...lines) => {
    replace(
      result,
      h('p', { class: 'conn-test-title' }, title),
      lines.filter(Boolean).map((l) => h('p', { class: 'conn-test-line' }, l)),
    );
  };

  button.addEventListener('click', async () => {
    if (running) {
      running.abort();
      return;
    }
    const run = new AbortController();
    running = run;
    button.textContent = 'Stop the test';
    result.dataset.outcome = 'running';
    delete result.dataset.tone;
    result.setAttribute('aria-busy', 'true');
    say('Testing your connection…', STEP_WORDS.relay);
    const r = await runConnectionTest(room.iceServers, {
      signal: run.signal,
      onStep: (step) => {
        if (running === run) say('Testing your connection…', STEP_WORDS[step]);
      },
    });
    running = null;
    if (room.lifetime.aborted) return;
    const d = describeResult(r);
    button.textContent = 'Test again';
    result.dataset.outcome = r.outcome;
    result.dataset.tone = d.tone;
    result.removeAttribute('aria-busy');
    say(
      d.title,
      d.text,
      d.direct ? h('span', null, h('strong', null, `Direct connections: ${d.direct.verdict}`), ' ', d.direct.why) : '',
      r.detail ? h('span', { class: 'conn-test-detail' }, `Your browser said: ${r.detail}`) : '',
    );
  });
  room.lifetime.addEventListener('abort', () => running?.abort(), { once: true });

  return h('div', { class: 'conn-test', id: 'conn-test' }, h('div', { class: 'conn-test-head' }, button, intro), result);
}
