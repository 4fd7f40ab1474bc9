// @ts-check
/**
 * @file The peer mesh: one RTCPeerConnection per other member of the room,
 * negotiated with the W3C "perfect negotiation" pattern.
 *
 * The module knows nothing of the page or of the server protocol. It takes a
 * signaller (anything with `send(to, data)`; the room page passes a thin
 * wrapper around ServerConnection.signal(…)) and is fed incoming
 * signals through {@link Mesh#handleSignal}.
 *
 * Signal data (the `data` object of a protocol "signal" message) has one of
 * these shapes, each with `sid`, the random id of the sender's peer
 * connection (a new sid means the other side started afresh, for example
 * after a reload, and the connection is rebuilt):
 *
 *   {sid, description: {type, sdp}, media: {[mid]: MediaKind}, mseq}
 *   {sid, media: {[mid]: MediaKind}, mseq}
 *   {sid, candidate: {candidate, sdpMid, sdpMLineIndex, usernameFragment}}
 *   {sid, hello: true, restart?: true}
 *
 * A peer may start afresh only so often (SessionLimiter): a member that
 * sends signals with ever new sids, or hellos that ask for a new
 * connection, would otherwise make us rebuild a connection, and answer
 * with an offer, for each one. A new session past
 * the limit is ignored and counted, and the newest one is taken once the
 * limit allows; the first after a quiet spell is taken at once, so that a
 * real reconnection is never slowed.
 *
 * Every connection uses the certificates passed in (one DTLS certificate
 * for all of a member's connections, so that the others can recognise it:
 * trust.js).
 *
 * Roles: of two members, the one whose id sorts first is "polite". The
 * impolite side makes the first offer; the polite side only says hello
 * (repeated until the offer comes) and adds its data channel and tracks once
 * it has that offer, so the first offers never cross (a rollback while ICE
 * gathers can stall Chromium's gathering). Later changes may be offered by
 * either side at any time: perfect negotiation resolves the glare. The
 * impolite side also drives ICE restarts; the polite side asks for one with
 * hello+restart.
 *
 * Media: each side sends on four fixed slots, one transceiver per media
 * kind (MEDIA_KINDS order), negotiated once in both directions with the
 * first offer and answer. Turning a kind on or off only puts a track on its
 * slot or takes it off (replaceTrack): no renegotiation, so media can never
 * be caught in an offer collision. (After a collision, when both ends
 * turned a camera on at once, Chromium 156 could go on decoding a received
 * video's frames without ever delivering them to its track.) A peer that
 * offered fewer slots (another implementation) gets transceivers added,
 * which renegotiates.
 *
 * `media` labels the tracks the sender sends, by transceiver mid, which is
 * the one identifier both ends share; `mseq` numbers the labels, so that
 * the newest wins whichever way they came: with each description, and on
 * every change, over the data channel ("mesh.media") when it is open or
 * as a signal otherwise. Nothing else is trusted from a peer: every field
 * is checked before use.
 *
 * Over the one negotiated data channel of each peer connection travel JSON
 * objects with a string `type`. Types starting with "mesh." are the mesh's
 * own (for example "mesh.view", a receiver telling a sender whether and at
 * what size a video is shown); every other object is handed to listeners as
 * a "message" event (chat.js uses "chat.*"). Each peer has a budget of
 * messages and volume a second on it (CHANNEL_BUDGET): what exceeds it is
 * dropped, unparsed, and counted (inbound.refused).
 */

import { MAX_CHANNEL_MESSAGE, PeerLimiter, TokenBucket, parseChannelMessage } from './wire.js';

export { MAX_CHANNEL_MESSAGE };

/** @typedef {'mic' | 'camera' | 'screen' | 'screen-audio'} MediaKind */
/** @typedef {'connecting' | 'direct' | 'relayed' | 'failed'} PeerStateName */

/**
 * Where signals go. `send` resolves once the message is on its way (or
 * when the server accepted it) and rejects when it could not be sent or,
 * for a signaller that waits for the answer, was refused. The room page's
 * signaller sends quiet signals: the server's refusals (the member went
 * offline) are only logged.
 * @typedef {{ send(to: string, data: object): Promise<void> }} Signaller
 */

/**
 * Event details.
 * @typedef {{ id: string, state: PeerStateName, rttMs: number | null }} PeerStateDetail
 * @typedef {{ id: string, kind: MediaKind, track: MediaStreamTrack, stream: MediaStream, receiver: RTCRtpReceiver }} TrackDetail
 * @typedef {{ id: string, kind: MediaKind }} TrackEndedDetail
 * @typedef {{ id: string }} PeerDetail
 * @typedef {{ id: string, data: Record<string, unknown> & { type: string } }} MessageDetail
 * @typedef {{ id: string, error: unknown, context: string }} ErrorDetail
 */

/**
 * The events a Mesh dispatches, all CustomEvents with these details.
 * @typedef {{
 *   peeradded: CustomEvent<PeerDetail>,
 *   peerremoved: CustomEvent<PeerDetail>,
 *   peerstate: CustomEvent<PeerStateDetail>,
 *   track: CustomEvent<TrackDetail>,
 *   trackended: CustomEvent<TrackEndedDetail>,
 *   channelopen: CustomEvent<PeerDetail>,
 *   channelclose: CustomEvent<PeerDetail>,
 *   message: CustomEvent<MessageDetail>,
 *   error: CustomEvent<ErrorDetail>,
 * }} MeshEventMap
 */

/**
 * What a receiver tells a sender about one of its videos: whether it is
 * shown at all, and at what size in device pixels.
 * @typedef {{ visible: boolean, width?: number, height?: number }} RemoteView
 */

/** The kinds of local media, in a stable order. */
export const MEDIA_KINDS = /** @type {const} */ (['mic', 'camera', 'screen', 'screen-audio']);

/** @type {Record<MediaKind, 'audio' | 'video'>} */
const TRACK_KIND = { 'mic': 'audio', 'camera': 'video', 'screen': 'video', 'screen-audio': 'audio' };

/**
 * What one peer may send over its data channel, all types together: 50
 * messages a second (200 at once) and a million UTF-16 code units a second
 * (two million at once: a whole chat history, with room to spare).
 * @type {import('./wire.js').PeerBudget}
 */
const CHANNEL_BUDGET = { messages: 50, messageBurst: 200, units: 1_000_000, unitBurst: 2_000_000 };

const MAX_LABELS = 16;
const MAX_QUEUED_CANDIDATES = 200;
const MAX_SDP = 100 * 1024;
/** How long an offer may stay unanswered before it is rolled back and redone. */
const OFFER_TIMEOUT_MS = 10_000;
/** How long "disconnected" may last before an ICE restart. */
const DISCONNECTED_RESTART_MS = 5_000;
/** How long the polite side waits before asking again for the first offer, or for a restart. */
const HELLO_RETRY_MS = 5_000;
/** New sessions a peer may start at once with us… */
const SESSION_BURST = 4;
/** …and then one per this many ms. */
const SESSION_REFILL_MS = 15_000;
/**
 * How many signals of one deferred session are kept: its hello or offer
 * and the candidates that follow, plenty for one session's gathering.
 */
export const DEFERRED_SIGNALS = 32;

/**
 * How often each peer may start a new session with us: a token bucket per
 * peer (wire.js), SESSION_BURST deep, refilled by one every
 * SESSION_REFILL_MS.
 */
export class SessionLimiter {
	/**
	 * @param {{burst?: number, refillMs?: number, now?: () => number}} [options]
	 */
	constructor({ burst = SESSION_BURST, refillMs = SESSION_REFILL_MS, now = () => performance.now() } = {}) {
		this.burst = burst;
		this.rate = 1000 / refillMs;
		this.now = now;
		/** @type {Map<string, TokenBucket>} peers with tokens spent */
		this.buckets = new Map();
		/** New sessions refused so far, all peers together. */
		this.refused = 0;
	}

	/**
	 * Takes one new session of a peer if it may start one now.
	 * @param {string} id
	 * @returns {number} 0 when it may (and is counted), else the ms until it may
	 */
	take(id) {
		// A full bucket is the default: forget it, so that the map holds only
		// peers that started sessions recently.
		for (const [other, b] of this.buckets) {
			if (other !== id && b.full()) {
				this.buckets.delete(other);
			}
		}
		let b = this.buckets.get(id);
		if (!b) {
			b = new TokenBucket(this.rate, this.burst, this.now);
			this.buckets.set(id, b);
		}
		if (b.take(1)) {
			return 0;
		}
		this.refused++;
		return Math.ceil(b.wait(1));
	}
}

/**
 * @param {unknown} v
 * @returns {v is Record<string, unknown>}
 */
function isObject(v) {
	return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** @param {unknown} v @returns {v is MediaKind} */
export function isMediaKind(v) {
	return typeof v === 'string' && /** @type {readonly string[]} */ (MEDIA_KINDS).includes(v);
}

/** A random id: 96 bits, base64url. */
export function randomId() {
	const b = crypto.getRandomValues(new Uint8Array(12));
	return btoa(String.fromCharCode(...b)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/**
 * The sending parameters for a track of this kind in a room of roomSize
 * people (self included): bitrates that shrink as the room grows, so that
 * the upload (roomSize − 1 copies) stays near 2–3 Mbps in total, and a
 * screen that favours detail at a low frame rate.
 * @param {MediaKind} kind
 * @param {number} roomSize
 * @returns {{ maxBitrate: number, maxFramerate?: number, maintainResolution?: boolean }}
 */
export function senderPolicy(kind, roomSize) {
	const n = Math.max(2, Math.floor(roomSize) || 2);
	switch (kind) {
	case 'mic':
		return { maxBitrate: n <= 4 ? 40_000 : 32_000 };
	case 'screen-audio':
		return { maxBitrate: n <= 4 ? 96_000 : 64_000 };
	case 'camera':
		// 600 kbps at 2 people, 150 kbps at 8 and beyond.
		return { maxBitrate: Math.round(Math.max(150_000, Math.min(600_000, 1_200_000 / n))), maxFramerate: n <= 4 ? 24 : 15 };
	case 'screen':
		// Detail over motion: 1.5 Mbps at 2, 500 kbps at 6 and beyond.
		return { maxBitrate: Math.round(Math.max(500_000, Math.min(1_500_000, 3_000_000 / n))), maxFramerate: n <= 4 ? 8 : 5, maintainResolution: true };
	}
}

/**
 * Checks a session description received from a peer.
 * @param {unknown} d
 * @returns {d is RTCSessionDescriptionInit & { type: 'offer' | 'answer', sdp: string }}
 */
function validDescription(d) {
	return isObject(d) && (d.type === 'offer' || d.type === 'answer') &&
		typeof d.sdp === 'string' && d.sdp.length > 0 && d.sdp.length <= MAX_SDP;
}

/**
 * Checks an ICE candidate received from a peer.
 * @param {unknown} c
 * @returns {RTCIceCandidateInit | null}
 */
function validCandidate(c) {
	if (!isObject(c) || typeof c.candidate !== 'string' || c.candidate.length > 1024) {
		return null;
	}
	/** @type {RTCIceCandidateInit} */
	const init = { candidate: c.candidate };
	if (typeof c.sdpMid === 'string' && c.sdpMid.length <= 64) {
		init.sdpMid = c.sdpMid;
	}
	if (Number.isInteger(c.sdpMLineIndex) && /** @type {number} */ (c.sdpMLineIndex) >= 0 && /** @type {number} */ (c.sdpMLineIndex) < 1024) {
		init.sdpMLineIndex = /** @type {number} */ (c.sdpMLineIndex);
	}
	if (typeof c.usernameFragment === 'string' && c.usernameFragment.length <= 256) {
		init.usernameFragment = c.usernameFragment;
	}
	if (init.sdpMid === undefined && init.sdpMLineIndex === undefined) {
		return null;
	}
	return init;
}

/**
 * Checks the media labels of a description: mid → kind, each kind at most
 * once.
 * @param {unknown} m
 * @returns {Map<string, MediaKind>}
 */
function validLabels(m) {
	/** @type {Map<string, MediaKind>} */
	const labels = new Map();
	if (!isObject(m)) {
		return labels;
	}
	const seen = new Set();
	for (const [mid, kind] of Object.entries(m).slice(0, MAX_LABELS)) {
		if (mid.length <= 32 && isMediaKind(kind) && !seen.has(kind)) {
			seen.add(kind);
			labels.set(mid, kind);
		}
	}
	return labels;
}

/** @param {RTCRtpTransceiver} t */
function isStopped(t) {
	return t.currentDirection === 'stopped' || t.direction === 'stopped';
}

/** @param {RTCRtpTransceiver} t */
function sends(t) {
	return t.direction === 'sendrecv' || t.direction === 'sendonly';
}

/**
 * One remote member: its peer connection and everything negotiated with it.
 * Internal to the module.
 */
class Peer {
	/**
	 * @param {string} id
	 * @param {boolean} polite
	 * @param {RTCConfiguration} config
	 */
	constructor(id, polite, config) {
		this.id = id;
		this.polite = polite;
		/** Our session id towards this peer: changes when the connection is rebuilt. */
		this.sid = randomId();
		/** The peer's session id, once known. */
		this.remoteSid = '';
		this.pc = new RTCPeerConnection(config);
		/**
		 * The data channel (negotiated, id 0). The impolite side creates it at
		 * once; the polite side once the first offer is applied.
		 * @type {RTCDataChannel | null}
		 */
		this.channel = null;
		/** Whether our data channel and tracks are on the connection (see roles above). */
		this.started = false;
		this.makingOffer = false;
		this.ignoreOffer = false;
		this.isSettingRemoteAnswerPending = false;
		/** @type {RTCIceCandidateInit[]} candidates received before any remote description */
		this.pendingCandidates = [];
		/** Incoming signals are applied one at a time, in order. */
		/** @type {Promise<void>} */
		this.incoming = Promise.resolve();
		/** Changes to local tracks are applied one at a time, in order. */
		/** @type {Promise<void>} */
		this.outgoing = Promise.resolve();
		/** @type {Map<MediaKind, RTCRtpTransceiver>} the transceiver of each kind we send (or may send) on */
		this.slots = new Map();
		/** The number of our latest labels (see `mseq` above). */
		this.mediaSeq = 0;
		/** Our labels as last numbered, as JSON. */
		this.sentLabels = '{}';
		/** @type {Map<string, MediaKind>} the peer's labels: mid → kind it sends there */
		this.remoteLabels = new Map();
		/** The number of the peer's labels applied last. */
		this.remoteMediaSeq = 0;
		/** @type {Map<MediaKind, { transceiver: RTCRtpTransceiver, stream: MediaStream }>} what the peer sends us */
		this.remote = new Map();
		/** @type {Map<MediaKind, RemoteView>} how the peer shows our videos */
		this.viewedAs = new Map();
		/** @type {Map<MediaKind, RemoteView>} how we show the peer's videos (resent when the channel reopens) */
		this.viewing = new Map();
		/** @type {PeerStateName} */
		this.state = 'connecting';
		/** @type {number | null} */
		this.rttMs = null;
		this.channelOpen = false;
		/** The member has no server connection (see Mesh#peerOffline). */
		this.offline = false;
		this.closed = false;
		/** @type {ReturnType<typeof setTimeout> | undefined} */
		this.offerTimer = undefined;
		/** @type {ReturnType<typeof setTimeout> | undefined} */
		this.disconnectTimer = undefined;
		/** @type {ReturnType<typeof setTimeout> | undefined} */
		this.helloTimer = undefined;
		this.statsBusy = false;
	}

	close() {
		this.closed = true;
		clearTimeout(this.offerTimer);
		clearTimeout(this.disconnectTimer);
		clearTimeout(this.helloTimer);
		try {
			this.channel?.close();
		} catch {
			// already closed
		}
		this.pc.close();
	}
}

/**
 * The mesh of peer connections of one member in one room.
 *
 * @example
 *   const mesh = new Mesh({ selfId, signaller: { send: (to, data) => conn.signal(to, data) }, iceServers });
 *   conn.addEventListener('signal', (e) => mesh.handleSignal(e.detail.from, e.detail.data));
 *   for (const m of room.members) if (m.online && m.id !== selfId) mesh.addPeer(m.id);
 */
export class Mesh extends EventTarget {
	/**
	 * @param {object} options
	 * @param {string} options.selfId our member id
	 * @param {Signaller} options.signaller
	 * @param {RTCIceServer[]} [options.iceServers] STUN/TURN servers (none by default: host candidates only)
	 * @param {RTCIceTransportPolicy} [options.iceTransportPolicy] "relay" forces TURN
	 * @param {number} [options.statsIntervalMs] how often connected peers' stats are read (default 2500)
	 * @param {RTCCertificate[]} [options.certificates] the DTLS certificates of every connection (default: one per connection, made by the browser)
	 * @param {SessionLimiter} [options.sessions] how often a peer may start a new session
	 */
	constructor({ selfId, signaller, iceServers = [], iceTransportPolicy = 'all', statsIntervalMs = 2500, certificates, sessions = new SessionLimiter() }) {
		super();
		if (!selfId) {
			throw new TypeError('Mesh: selfId is required');
		}
		this.selfId = selfId;
		this.signaller = signaller;
		/** @type {RTCConfiguration} */
		this.config = { iceServers, iceTransportPolicy, bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require', ...(certificates ? { certificates } : {}) };
		this.sessions = sessions;
		/**
		 * Per peer, the signals of the newest session refused by the limiter
		 * (its sid, and its first signals in order, at most DEFERRED_SIGNALS),
		 * handled when the limiter allows.
		 * @type {Map<string, {sid: string, signals: Record<string, unknown>[], timer: ReturnType<typeof setTimeout>}>}
		 */
		this.deferred = new Map();
		/** @type {Map<string, string>} the last session id each peer used, kept across rebuilds */
		this.remoteSids = new Map();
		this.statsIntervalMs = statsIntervalMs;
		/** @type {Map<string, Peer>} */
		this.peerMap = new Map();
		/** @type {Map<string, string>} removed peers: id → the sid they had, whose late signals are ignored */
		this.removed = new Map();
		/** @type {Map<MediaKind, { track: MediaStreamTrack, stream: MediaStream }>} */
		this.local = new Map();
		// One stream for microphone and camera (kept in sync at the far end),
		// one for the screen and its audio.
		this.userStream = new MediaStream();
		this.screenStream = new MediaStream();
		/** @type {ReturnType<typeof setTimeout> | undefined} */
		this.statsTimer = undefined;
		this.closed = false;
		/** The peers' budgets on their data channels. */
		this.inbound = new PeerLimiter(CHANNEL_BUDGET);
	}

	/**
	 * Typed addEventListener for the events of {@link MeshEventMap}.
	 * @template {keyof MeshEventMap} K
	 * @param {K} type
	 * @param {(ev: MeshEventMap[K]) => void} listener
	 * @param {AddEventListenerOptions} [options]
	 */
	on(type, listener, options) {
		this.addEventListener(type, /** @type {EventListener} */ (listener), options);
	}

	/**
	 * @template {keyof MeshEventMap} K
	 * @param {K} type
	 * @param {MeshEventMap[K]['detail']} detail
	 */
	emit(type, detail) {
		this.dispatchEvent(new CustomEvent(type, { detail }));
	}

	/** The ids of the peers, in insertion order. */
	get peers() {
		return [...this.peerMap.keys()];
	}

	/**
	 * The connection state and round-trip time of a peer, or undefined.
	 * @param {string} id
	 * @returns {PeerStateDetail | undefined}
	 */
	peerState(id) {
		const p = this.peerMap.get(id);
		return p && { id, state: p.state, rttMs: p.rttMs };
	}

	/**
	 * What a peer sends us, by kind.
	 * @param {string} id
	 * @returns {Map<MediaKind, { track: MediaStreamTrack, stream: MediaStream, receiver: RTCRtpReceiver }>}
	 */
	remoteMedia(id) {
		const out = new Map();
		for (const [kind, r] of this.peerMap.get(id)?.remote ?? []) {
			out.set(kind, { track: r.transceiver.receiver.track, stream: r.stream, receiver: r.transceiver.receiver });
		}
		return out;
	}

	/**
	 * The peer connection of a peer, for diagnostics and tests. Do not
	 * negotiate on it.
	 * @param {string} id
	 */
	connection(id) {
		return this.peerMap.get(id)?.pc;
	}

	/**
	 * Starts a connection to a member (idempotent). Call it for every other
	 * member online in the room and on each "member.connected"/"joined".
	 * @param {string} id
	 */
	addPeer(id) {
		if (this.closed || id === this.selfId || typeof id !== 'string' || id === '') {
			return;
		}
		this.removed.delete(id);
		const p = this.peerMap.get(id);
		if (!p) {
			this.createPeer(id, true);
			this.roomSizeChanged();
			return;
		}
		p.offline = false;
		const cs = p.pc.connectionState;
		if (cs === 'failed' || cs === 'disconnected') {
			this.requestRestart(p);
		}
	}

	/**
	 * Tells the mesh a member lost its server connection ("member.disconnected").
	 * A call already established keeps going (the member may just be
	 * reconnecting to the server); the peer is removed once its connection
	 * is not, or no longer, connected.
	 * @param {string} id
	 */
	peerOffline(id) {
		const p = this.peerMap.get(id);
		if (!p) {
			return;
		}
		p.offline = true;
		if (p.pc.connectionState !== 'connected') {
			this.removePeer(id);
		}
	}

	/**
	 * Ends the connection to a member (who left, was kicked, or disconnected
	 * from the server for good). Late signals of that connection are ignored;
	 * a new one (a fresh offer) is accepted.
	 * @param {string} id
	 */
	removePeer(id) {
		const p = this.peerMap.get(id);
		if (!p) {
			return;
		}
		this.removed.set(id, p.remoteSid);
		clearTimeout(this.deferred.get(id)?.timer);
		this.deferred.delete(id);
		this.dropPeer(p);
		this.emit('peerremoved', { id });
		this.roomSizeChanged();
	}

	/**
	 * Closes every connection, first telling each peer (over its data
	 * channel) that we are leaving, so that it drops us at once rather
	 * than when the connection times out. Call it on leaving the room and
	 * on the page's "pagehide". The mesh cannot be used afterwards.
	 */
	close() {
		this.closed = true;
		clearTimeout(this.statsTimer);
		for (const d of this.deferred.values()) {
			clearTimeout(d.timer);
		}
		this.deferred.clear();
		for (const p of this.peerMap.values()) {
			this.sendControl(p, { type: 'mesh.bye' });
		}
		for (const p of [...this.peerMap.values()]) {
			this.dropPeer(p);
			this.emit('peerremoved', { id: p.id });
		}
	}

	/**
	 * Replaces the STUN/TURN servers (for example with fresh TURN
	 * credentials). Applies to existing connections at their next ICE
	 * gathering (restart) and to new ones.
	 * @param {RTCIceServer[]} iceServers
	 */
	setIceServers(iceServers) {
		this.config = { ...this.config, iceServers };
		for (const p of this.peerMap.values()) {
			try {
				p.pc.setConfiguration({ ...p.pc.getConfiguration(), iceServers });
			} catch (err) {
				this.emit('error', { id: p.id, error: err, context: 'setConfiguration' });
			}
		}
	}

	/**
	 * Restarts ICE towards one peer, or towards every peer not connected
	 * (for example once the signalling connection is back).
	 * @param {string} [id]
	 */
	restartIce(id) {
		for (const p of this.peerMap.values()) {
			if (id === undefined ? p.pc.connectionState !== 'connected' : p.id === id) {
				this.requestRestart(p);
			}
		}
	}

	/**
	 * Sets, replaces or removes (track null) the local track of a kind, on
	 * every connection: on the kind's slot, without renegotiation (see the
	 * top), and tells each peer.
	 * @param {MediaKind} kind
	 * @param {MediaStreamTrack | null} track
	 * @returns {Promise<void>} settles once every connection has applied it
	 */
	async setLocalTrack(kind, track) {
		if (!isMediaKind(kind)) {
			throw new TypeError(`Mesh: unknown media kind ${kind}`);
		}
		if (track && track.kind !== TRACK_KIND[kind]) {
			throw new TypeError(`Mesh: a ${kind} track must be ${TRACK_KIND[kind]}`);
		}
		const stream = this.streamOf(kind);
		const old = this.local.get(kind);
		if (old && old.track !== track) {
			stream.removeTrack(old.track);
		}
		if (track) {
			if (!stream.getTracks().includes(track)) {
				stream.addTrack(track);
			}
			this.local.set(kind, { track, stream });
		} else {
			this.local.delete(kind);
		}
		await Promise.all([...this.peerMap.values()].map((p) => this.queueOutgoing(p, () => this.applySlot(p, kind))));
	}

	/**
	 * The local track sent for a kind, if any.
	 * @param {MediaKind} kind
	 */
	localTrack(kind) {
		return this.local.get(kind)?.track ?? null;
	}

	/**
	 * Tells a peer how we show one of its videos, so that it stops encoding
	 * it for us while it is hidden and sends it no larger than shown. Cheap:
	 * no renegotiation. Remembered and re-sent if the data channel reopens.
	 * @param {string} id
	 * @param {MediaKind} kind "camera" or "screen"
	 * @param {RemoteView} view
	 */
	setRemoteView(id, kind, view) {
		const p = this.peerMap.get(id);
		if (!p || (kind !== 'camera' && kind !== 'screen')) {
			return;
		}
		/** @type {RemoteView} */
		const v = { visible: !!view.visible };
		if (view.width && view.height) {
			v.width = Math.round(view.width);
			v.height = Math.round(view.height);
		}
		p.viewing.set(kind, v);
		this.sendControl(p, { type: 'mesh.view', kind, ...v });
	}

	/**
	 * Sends a JSON object to a peer over the data channel.
	 * @param {string} id
	 * @param {{ type: string } & Record<string, unknown>} data
	 * @returns {boolean} false when the channel is not open or the message too large
	 */
	send(id, data) {
		const p = this.peerMap.get(id);
		if (!p || !p.channelOpen || !p.channel) {
			return false;
		}
		const text = JSON.stringify(data);
		const max = Math.min(MAX_CHANNEL_MESSAGE, p.pc.sctp?.maxMessageSize ?? MAX_CHANNEL_MESSAGE);
		if (text.length * 3 > max && new TextEncoder().encode(text).length > max) {
			return false;
		}
		try {
			p.channel.send(text);
			return true;
		} catch {
			return false;
		}
	}

	/**
	 * Sends a JSON object to every peer whose channel is open.
	 * @param {{ type: string } & Record<string, unknown>} data
	 * @returns {string[]} the ids it was sent to
	 */
	broadcast(data) {
		return this.peers.filter((id) => this.send(id, data));
	}

	/** The ids of the peers whose data channel is open. */
	get openPeers() {
		return [...this.peerMap.values()].filter((p) => p.channelOpen).map((p) => p.id);
	}

	/**
	 * Applies a signal received from the server: `{type: "signal", from, data}`.
	 * A signal from a member we have no connection with starts one.
	 * @param {string} from
	 * @param {unknown} data
	 */
	handleSignal(from, data) {
		if (this.closed || typeof from !== 'string' || from === '' || from === this.selfId || !isObject(data)) {
			return;
		}
		const sid = typeof data.sid === 'string' && data.sid.length <= 64 ? data.sid : '';
		if (!sid) {
			return;
		}
		let p = this.peerMap.get(from);
		// A session is new when its sid is not the last one this peer used,
		// whatever became of our connection since (rebuilt, removed): a
		// rebuilt connection must not let any sid in as a first contact.
		const known = this.remoteSids.get(from);
		const fresh = known === undefined ? !p : known !== sid;
		if (fresh && !this.mayStart(from, sid, data)) {
			return;
		}
		this.remoteSids.set(from, sid);
		if (!p) {
			if (this.removed.has(from) && this.removed.get(from) === sid) {
				return; // a late signal of a connection we closed
			}
			this.removed.delete(from);
			p = this.createPeer(from, false);
			this.emit('peeradded', { id: from });
			this.roomSizeChanged();
		} else if (p.remoteSid && p.remoteSid !== sid) {
			// The other side started a new connection (reload, new tab): the
			// old one cannot be renegotiated into it.
			this.dropPeer(p);
			p = this.createPeer(from, false);
		}
		const firstContact = !p.remoteSid;
		if (firstContact) {
			p.remoteSid = sid;
			if (data.hello === true && data.restart !== true) {
				return; // our first offer is on its way (or made just now)
			}
		}
		const peer = p;
		peer.incoming = peer.incoming.then(() => this.applySignal(peer, data)).catch((err) => {
			this.emit('error', { id: peer.id, error: err, context: 'signal' });
		});
	}

	/** New sessions refused so far because peers started too many. */
	get refusedSessions() {
		return this.sessions.refused;
	}

	// ---- internals -------------------------------------------------------

	/**
	 * Whether a peer may start a new session now (a signal with a new sid).
	 * If not, the signal is kept with the others of its session (its offer
	 * or hello, then its candidates: the first DEFERRED_SIGNALS), a newer
	 * session replacing an older one, and they are handled in order once
	 * the limiter allows.
	 * @param {string} from
	 * @param {string} sid
	 * @param {Record<string, unknown>} data
	 * @returns {boolean}
	 */
	mayStart(from, sid, data) {
		const kept = this.deferred.get(from);
		if (kept) {
			if (kept.sid !== sid) {
				kept.sid = sid;
				kept.signals = [];
			}
			if (kept.signals.length < DEFERRED_SIGNALS) {
				kept.signals.push(data);
			}
			this.sessions.refused++;
			return false;
		}
		const wait = this.sessions.take(from);
		if (wait === 0) {
			return true;
		}
		const timer = setTimeout(() => this.resumeDeferred(from), wait);
		this.deferred.set(from, { sid, signals: [data], timer });
		return false;
	}

	/**
	 * Handles the signals kept of a peer's deferred session, in order (its
	 * first one goes to the limiter again).
	 * @param {string} from
	 */
	resumeDeferred(from) {
		const d = this.deferred.get(from);
		if (!d) {
			return;
		}
		clearTimeout(d.timer);
		this.deferred.delete(from);
		for (const data of d.signals) {
			this.handleSignal(from, data);
		}
	}


	/**
	 * @param {string} id
	 * @param {boolean} greet whether a polite side says hello (not when the
	 *   connection is made because the other side signalled)
	 */
	createPeer(id, greet) {
		const p = new Peer(id, this.selfId < id, this.config);
		this.peerMap.set(id, p);
		const pc = p.pc;

		pc.onnegotiationneeded = async () => {
			if (p.closed) {
				return;
			}
			try {
				p.makingOffer = true;
				await pc.setLocalDescription();
				const desc = pc.localDescription;
				if (p.closed || !desc || desc.type !== 'offer' || pc.signalingState !== 'have-local-offer') {
					return;
				}
				this.signal(p, { description: { type: desc.type, sdp: desc.sdp }, ...this.mediaLabels(p) });
				this.armOfferTimer(p);
			} catch (err) {
				this.emit('error', { id, error: err, context: 'offer' });
			} finally {
				p.makingOffer = false;
			}
		};
		pc.onicecandidate = ({ candidate }) => {
			if (candidate && candidate.candidate) {
				this.signal(p, { candidate: candidate.toJSON() });
			}
		};
		pc.onsignalingstatechange = () => {
			if (pc.signalingState === 'stable') {
				clearTimeout(p.offerTimer);
				// Encodings exist once a transceiver is negotiated, and so do
				// the mids of slots added for a peer that offered fewer.
				for (const kind of p.slots.keys()) {
					this.queueOutgoing(p, () => this.applyParams(p, kind));
				}
				this.queueOutgoing(p, async () => this.announceMedia(p));
			}
		};
		pc.onconnectionstatechange = () => this.connectionChanged(p);

		if (p.polite) {
			if (greet) {
				this.signal(p, { hello: true });
			}
			this.armHello(p);
		} else {
			this.startPeer(p);
		}
		this.emitState(p, true);
		this.scheduleStats();
		return p;
	}

	/**
	 * Puts our data channel and local tracks on p's connection.
	 * @param {Peer} p
	 * @returns {Promise<void>} once the tracks are on
	 */
	startPeer(p) {
		if (p.started) {
			return Promise.resolve();
		}
		p.started = true;
		clearTimeout(p.helloTimer);
		const id = p.id;
		// The fixed slots (see the top): the impolite side makes them, the
		// polite side takes those of the offer. No m-line is added later, so
		// the two sides never pick the same new mid at once (which Chromium
		// cannot roll back cleanly), and transceivers never pile up.
		const fresh = p.pc.getTransceivers().length === 0;
		for (const kind of MEDIA_KINDS) {
			const stream = this.streamOf(kind);
			if (!p.polite && fresh) {
				p.slots.set(kind, p.pc.addTransceiver(TRACK_KIND[kind], { direction: 'sendrecv', streams: [stream] }));
				continue;
			}
			// The kind's own slot: the n-th transceiver of its media type, n
			// being the kind's rank among the kinds of that type.
			const rank = MEDIA_KINDS.filter((k) => TRACK_KIND[k] === TRACK_KIND[kind]).indexOf(kind);
			const own = p.pc.getTransceivers().filter((x) => x.receiver.track.kind === TRACK_KIND[kind])[rank];
			if (own && !isStopped(own)) {
				own.direction = 'sendrecv';
				own.sender.setStreams?.(stream);
				p.slots.set(kind, own);
			}
		}
		const ch = p.channel = p.pc.createDataChannel('lepeerchat', { negotiated: true, id: 0, ordered: true });
		ch.onopen = () => {
			if (p.closed) {
				return;
			}
			p.channelOpen = true;
			for (const [kind, v] of p.viewing) {
				this.sendControl(p, { type: 'mesh.view', kind, ...v });
			}
			this.emit('channelopen', { id });
		};
		ch.onclose = () => {
			if (p.channelOpen) {
				p.channelOpen = false;
				if (!p.closed) {
					this.emit('channelclose', { id });
				}
			}
			if (p.offline && !p.closed) {
				this.removePeer(id); // the member closed its page
			}
		};
		ch.onmessage = (ev) => this.channelMessage(p, ev.data);
		return Promise.all([...this.local.keys()].map((kind) => this.queueOutgoing(p, () => this.applySlot(p, kind)))).then(() => {});
	}

	/**
	 * The polite side repeats its hello until the first offer comes.
	 * @param {Peer} p
	 */
	armHello(p) {
		clearTimeout(p.helloTimer);
		p.helloTimer = setTimeout(() => {
			if (!p.closed && !p.started) {
				this.signal(p, { hello: true });
				this.armHello(p);
			}
		}, HELLO_RETRY_MS);
	}

	/**
	 * Restarts ICE (impolite side) or asks the other side to (polite side).
	 * @param {Peer} p
	 */
	requestRestart(p) {
		if (p.closed) {
			return;
		}
		if (p.polite) {
			this.signal(p, { hello: true, restart: true });
		} else {
			p.pc.restartIce();
		}
	}

	/**
	 * Replaces p's connection by a new one (new sid), which makes a fresh
	 * offer.
	 * @param {Peer} p
	 */
	rebuild(p) {
		this.dropPeer(p);
		this.createPeer(p.id, false);
	}

	/**
	 * Closes a peer's connection and tells listeners its media and channel
	 * are gone.
	 * @param {Peer} p
	 */
	dropPeer(p) {
		if (this.peerMap.get(p.id) === p) {
			this.peerMap.delete(p.id);
		}
		const wasOpen = p.channelOpen;
		p.channelOpen = false;
		p.close();
		for (const kind of p.remote.keys()) {
			this.emit('trackended', { id: p.id, kind });
		}
		p.remote.clear();
		if (wasOpen) {
			this.emit('channelclose', { id: p.id });
		}
	}

	/**
	 * Sends a signal to a peer; failures the signaller reports are
	 * emitted as "error", not thrown: the offer watchdog and ICE restarts
	 * recover from a signal that was lost.
	 * @param {Peer} p
	 * @param {object} data
	 */
	signal(p, data) {
		if (p.closed) {
			return;
		}
		Promise.resolve()
			.then(() => this.signaller.send(p.id, { sid: p.sid, ...data }))
			.catch((err) => this.emit('error', { id: p.id, error: err, context: 'send signal' }));
	}

	/**
	 * The labels of what we send to p: mid → kind, for negotiated
	 * transceivers that carry one of our tracks.
	 * @param {Peer} p
	 * @returns {Record<string, MediaKind>}
	 */
	labels(p) {
		/** @type {Record<string, MediaKind>} */
		const out = {};
		for (const [kind, t] of p.slots) {
			if (t.mid !== null && sends(t) && t.sender.track) {
				out[t.mid] = kind;
			}
		}
		return out;
	}

	/**
	 * Perfect negotiation: applies one incoming signal.
	 * @param {Peer} p
	 * @param {Record<string, unknown>} data
	 */
	async applySignal(p, data) {
		if (p.closed) {
			return;
		}
		const pc = p.pc;
		if (data.hello === true) {
			if (p.polite) {
				return;
			}
			// The polite side waits for an offer, or wants a restart.
			const cs = pc.connectionState;
			if (cs === 'connected' && data.restart !== true) {
				return;
			}
			if (!pc.remoteDescription || cs === 'new' || cs === 'failed' || cs === 'closed') {
				// A rebuild is a new session too: a peer repeating its hello
				// may have one only as often as the limiter allows (it says
				// hello again until it gets its offer).
				if (this.sessions.take(p.id) === 0) {
					this.rebuild(p);
				}
			} else if (cs !== 'connected' || data.restart === true) {
				pc.restartIce();
			}
			return;
		}
		if (data.description !== undefined) {
			const description = data.description;
			if (!validDescription(description)) {
				throw new Error('invalid description from peer');
			}
			const readyForOffer = !p.makingOffer && (pc.signalingState === 'stable' || p.isSettingRemoteAnswerPending);
			const offerCollision = description.type === 'offer' && !readyForOffer;
			p.ignoreOffer = !p.polite && offerCollision;
			if (p.ignoreOffer) {
				return;
			}
			if (description.type === 'answer' && pc.signalingState !== 'have-local-offer') {
				return; // a stale answer (to an offer rolled back meanwhile)
			}
			p.isSettingRemoteAnswerPending = description.type === 'answer';
			try {
				// An offer in have-local-offer rolls our offer back implicitly.
				await pc.setRemoteDescription({ type: description.type, sdp: description.sdp });
			} finally {
				p.isSettingRemoteAnswerPending = false;
			}
			if (p.closed) {
				return;
			}
			this.acceptLabels(p, data.media, data.mseq);
			await this.drainCandidates(p);
			this.reconcileRemote(p);
			if (description.type === 'offer') {
				// The first offer: our channel and tracks go in the answer.
				await this.startPeer(p);
				await pc.setLocalDescription();
				const answer = pc.localDescription;
				if (!p.closed && answer && answer.type === 'answer') {
					this.signal(p, { description: { type: answer.type, sdp: answer.sdp }, ...this.mediaLabels(p) });
				}
			}
		} else if (data.media !== undefined) {
			if (this.acceptLabels(p, data.media, data.mseq)) {
				this.reconcileRemote(p);
			}
		} else if (data.candidate !== undefined) {
			const candidate = validCandidate(data.candidate);
			if (!candidate) {
				throw new Error('invalid candidate from peer');
			}
			if (!pc.remoteDescription) {
				// Too early: keep it for when the description comes.
				if (p.pendingCandidates.length < MAX_QUEUED_CANDIDATES) {
					p.pendingCandidates.push(candidate);
				}
				return;
			}
			try {
				await pc.addIceCandidate(candidate);
			} catch (err) {
				if (!p.ignoreOffer) {
					throw err;
				}
			}
		}
	}

	/**
	 * Applies the candidates that arrived before the remote description. A
	 * candidate of an abandoned offer (ICE credentials that did not survive a
	 * rollback) fails harmlessly.
	 * @param {Peer} p
	 */
	async drainCandidates(p) {
		const queued = p.pendingCandidates;
		p.pendingCandidates = [];
		for (const c of queued) {
			try {
				await p.pc.addIceCandidate(c);
			} catch {
				// from a description that was rolled back
			}
		}
	}

	/**
	 * Brings the peer's remote media in line with its labels and the
	 * negotiated transceivers; dispatches "track" and "trackended".
	 * @param {Peer} p
	 */
	reconcileRemote(p) {
		/** @type {Map<MediaKind, RTCRtpTransceiver>} */
		const found = new Map();
		for (const t of p.pc.getTransceivers()) {
			const kind = t.mid === null ? undefined : p.remoteLabels.get(t.mid);
			if (kind && !found.has(kind) && !isStopped(t) && t.receiver.track.kind === TRACK_KIND[kind]) {
				found.set(kind, t);
			}
		}
		for (const [kind, cur] of [...p.remote]) {
			if (found.get(kind) !== cur.transceiver) {
				p.remote.delete(kind);
				this.emit('trackended', { id: p.id, kind });
			}
		}
		for (const [kind, t] of found) {
			if (!p.remote.has(kind)) {
				const stream = new MediaStream([t.receiver.track]);
				p.remote.set(kind, { transceiver: t, stream });
				this.emit('track', { id: p.id, kind, track: t.receiver.track, stream, receiver: t.receiver });
			}
		}
	}

	/**
	 * @param {Peer} p
	 * @param {() => Promise<void>} op
	 */
	queueOutgoing(p, op) {
		const next = p.outgoing.then(() => (p.closed ? undefined : op()));
		p.outgoing = next.catch((err) => {
			if (!p.closed) {
				this.emit('error', { id: p.id, error: err, context: 'local media' });
			}
		});
		return p.outgoing;
	}

	/**
	 * Puts the local track of a kind on p's slot for it, or takes it off,
	 * and tells the peer. Without a slot for the kind (a peer that offered
	 * fewer), claims a free transceiver of the kind's media type or adds
	 * one, which renegotiates.
	 * @param {Peer} p
	 * @param {MediaKind} kind
	 */
	async applySlot(p, kind) {
		if (!p.started) {
			return; // applied when the peer starts
		}
		const want = this.local.get(kind);
		let t = p.slots.get(kind);
		if (t && isStopped(t)) {
			p.slots.delete(kind);
			t = undefined;
		}
		if (!t) {
			if (!want) {
				return;
			}
			const claimed = new Set(p.slots.values());
			t = p.pc.getTransceivers().find((x) => !claimed.has(x) && !isStopped(x) && x.receiver.track.kind === TRACK_KIND[kind]);
			if (t) {
				t.direction = 'sendrecv';
				t.sender.setStreams?.(want.stream);
			} else {
				t = p.pc.addTransceiver(TRACK_KIND[kind], { direction: 'sendrecv', streams: [want.stream] });
			}
			p.slots.set(kind, t);
		}
		const track = want?.track ?? null;
		if (t.sender.track !== track) {
			await t.sender.replaceTrack(track);
		}
		if (!p.closed) {
			await this.applyParams(p, kind);
			this.announceMedia(p);
		}
	}

	/**
	 * Our labels for p, numbered anew when they changed since last sent.
	 * @param {Peer} p
	 * @returns {{ media: Record<string, MediaKind>, mseq: number }}
	 */
	mediaLabels(p) {
		const media = this.labels(p);
		const text = JSON.stringify(media);
		if (text !== p.sentLabels) {
			p.sentLabels = text;
			p.mediaSeq++;
		}
		return { media, mseq: p.mediaSeq };
	}

	/**
	 * Tells p what we send now, if that changed: over the data channel when
	 * it is open, as a signal otherwise. (Labels not negotiated yet go with
	 * the next description.)
	 * @param {Peer} p
	 */
	announceMedia(p) {
		const before = p.mediaSeq;
		const labels = this.mediaLabels(p);
		if (labels.mseq === before || p.pc.signalingState === 'closed') {
			return;
		}
		if (p.channelOpen && p.channel?.readyState === 'open') {
			this.sendControl(p, { type: 'mesh.media', ...labels });
		} else {
			this.signal(p, labels);
		}
	}

	/**
	 * Takes the peer's labels unless newer ones came already (a peer that
	 * does not number them is always believed).
	 * @param {Peer} p
	 * @param {unknown} media
	 * @param {unknown} mseq
	 * @returns {boolean} whether they were taken
	 */
	acceptLabels(p, media, mseq) {
		if (Number.isSafeInteger(mseq) && /** @type {number} */ (mseq) > 0) {
			if (/** @type {number} */ (mseq) <= p.remoteMediaSeq) {
				return false;
			}
			p.remoteMediaSeq = /** @type {number} */ (mseq);
		}
		p.remoteLabels = validLabels(media);
		return true;
	}

	/**
	 * The stream our tracks of a kind belong to: microphone and camera in
	 * one (kept in sync at the far end), the screen and its sound in another.
	 * @param {MediaKind} kind
	 */
	streamOf(kind) {
		return kind === 'mic' || kind === 'camera' ? this.userStream : this.screenStream;
	}

	/**
	 * Applies the bitrate and frame-rate caps for the room's size, and the
	 * receiver's view (hidden → not encoded; small → scaled down), to the
	 * sender of a kind on p's connection.
	 * @param {Peer} p
	 * @param {MediaKind} kind
	 */
	async applyParams(p, kind) {
		const t = p.slots.get(kind);
		if (!t || !t.sender.track || isStopped(t) || (t.currentDirection !== 'sendrecv' && t.currentDirection !== 'sendonly')) {
			return; // not negotiated for sending yet: applied once stable
		}
		const params = t.sender.getParameters();
		if (!params.encodings || params.encodings.length === 0) {
			return;
		}
		const policy = senderPolicy(kind, this.peerMap.size + 1);
		const view = p.viewedAs.get(kind);
		const enc = params.encodings[0];
		const before = JSON.stringify(enc) + (params.degradationPreference ?? '');
		enc.maxBitrate = policy.maxBitrate;
		if (policy.maxFramerate) {
			enc.maxFramerate = policy.maxFramerate;
		}
		enc.active = view ? view.visible : true;
		if (TRACK_KIND[kind] === 'video') {
			enc.scaleResolutionDownBy = scaleFor(t.sender.track, view);
		}
		if (policy.maintainResolution) {
			params.degradationPreference = 'maintain-resolution';
		}
		if (JSON.stringify(enc) + (params.degradationPreference ?? '') === before) {
			return;
		}
		try {
			await t.sender.setParameters(params);
		} catch (err) {
			if (err instanceof DOMException && (err.name === 'InvalidStateError' || err.name === 'InvalidModificationError')) {
				return; // a negotiation changed the sender meanwhile: applied again once stable
			}
			if (!policy.maintainResolution) {
				throw err;
			}
			// A browser without degradationPreference: the caps alone.
			const again = t.sender.getParameters();
			if (again.encodings?.[0]) {
				Object.assign(again.encodings[0], { maxBitrate: enc.maxBitrate, maxFramerate: enc.maxFramerate, active: enc.active, scaleResolutionDownBy: enc.scaleResolutionDownBy });
				await t.sender.setParameters(again);
			}
		}
	}

	/** Re-applies the caps after the room changed size. */
	roomSizeChanged() {
		for (const p of this.peerMap.values()) {
			for (const kind of p.slots.keys()) {
				this.queueOutgoing(p, () => this.applyParams(p, kind));
			}
		}
	}

	/**
	 * @param {Peer} p
	 * @param {{ type: string } & Record<string, unknown>} data
	 */
	sendControl(p, data) {
		if (p.channelOpen && p.channel) {
			try {
				p.channel.send(JSON.stringify(data));
			} catch {
				// closing
			}
		}
	}

	/**
	 * @param {Peer} p
	 * @param {unknown} raw
	 */
	channelMessage(p, raw) {
		if (p.closed || typeof raw !== 'string') {
			return;
		}
		const data = this.inbound.allow(p.id, raw.length) ? parseChannelMessage(raw) : null;
		if (!data) {
			return;
		}
		if (data.type.startsWith('mesh.')) {
			if (data.type === 'mesh.media') {
				if (this.acceptLabels(p, data.media, data.mseq)) {
					this.reconcileRemote(p);
				}
				return;
			}
			if (data.type === 'mesh.bye') {
				this.removePeer(p.id); // its late signals are ignored; a new session is welcome
				return;
			}
			if (data.type === 'mesh.view' && (data.kind === 'camera' || data.kind === 'screen') && typeof data.visible === 'boolean') {
				/** @type {RemoteView} */
				const view = { visible: data.visible };
				if (isDimension(data.width) && isDimension(data.height)) {
					view.width = data.width;
					view.height = data.height;
				}
				const kind = data.kind;
				p.viewedAs.set(kind, view);
				this.queueOutgoing(p, () => this.applyParams(p, kind));
			}
			return;
		}
		this.emit('message', { id: p.id, data: /** @type {MessageDetail['data']} */ (data) });
	}

	/** @param {Peer} p */
	armOfferTimer(p) {
		clearTimeout(p.offerTimer);
		p.offerTimer = setTimeout(async () => {
			if (p.closed || p.pc.signalingState !== 'have-local-offer') {
				return;
			}
			// The offer or its answer was lost (the signalling connection
			// dropped, the peer reloaded): start over. Rolling back makes the
			// browser ask for a new negotiation when changes are pending.
			try {
				await p.pc.setLocalDescription({ type: 'rollback' });
				if (p.pc.connectionState !== 'connected') {
					this.requestRestart(p);
				}
			} catch (err) {
				this.emit('error', { id: p.id, error: err, context: 'offer timeout' });
			}
		}, OFFER_TIMEOUT_MS);
	}

	/** @param {Peer} p */
	connectionChanged(p) {
		if (p.closed) {
			return;
		}
		const cs = p.pc.connectionState;
		clearTimeout(p.disconnectTimer);
		if (p.offline && cs !== 'connected' && cs !== 'connecting' && cs !== 'new') {
			this.removePeer(p.id); // gone from the server and from us
			return;
		}
		switch (cs) {
		case 'connected':
			this.readStats(p);
			return;
		case 'disconnected':
			p.disconnectTimer = setTimeout(() => {
				if (!p.closed && p.pc.connectionState === 'disconnected') {
					this.requestRestart(p);
				}
			}, DISCONNECTED_RESTART_MS);
			this.setState(p, 'connecting', null);
			return;
		case 'failed':
			this.setState(p, 'failed', null);
			if (p.polite) {
				// The impolite side restarts; ask it if it does not.
				p.disconnectTimer = setTimeout(() => {
					if (!p.closed && p.pc.connectionState === 'failed') {
						this.requestRestart(p);
					}
				}, HELLO_RETRY_MS);
			} else {
				p.pc.restartIce();
			}
			return;
		case 'new':
		case 'connecting':
			if (p.state === 'failed') {
				return; // keep saying failed while a restart is attempted
			}
			this.setState(p, 'connecting', null);
		}
	}

	/**
	 * @param {Peer} p
	 * @param {PeerStateName} state
	 * @param {number | null} rttMs
	 */
	setState(p, state, rttMs) {
		if (p.state === state && p.rttMs === rttMs) {
			return;
		}
		p.state = state;
		p.rttMs = rttMs;
		this.emitState(p, false);
	}

	/**
	 * @param {Peer} p
	 * @param {boolean} initial
	 */
	emitState(p, initial) {
		if (initial || !p.closed) {
			this.emit('peerstate', { id: p.id, state: p.state, rttMs: p.rttMs });
		}
	}

	/** Polls the stats of connected peers, one timer for all, only while there are peers. */
	scheduleStats() {
		if (this.statsTimer !== undefined || this.closed || this.peerMap.size === 0) {
			return;
		}
		this.statsTimer = setTimeout(async () => {
			this.statsTimer = undefined;
			await Promise.all([...this.peerMap.values()].filter((p) => p.pc.connectionState === 'connected').map((p) => this.readStats(p)));
			this.scheduleStats();
		}, this.statsIntervalMs);
	}

	/**
	 * Reads the selected candidate pair of a connected peer: direct or
	 * relayed, and the round-trip time.
	 * @param {Peer} p
	 */
	async readStats(p) {
		if (p.statsBusy || p.closed) {
			return;
		}
		p.statsBusy = true;
		try {
			const info = pairInfo(await p.pc.getStats());
			if (!p.closed && p.pc.connectionState === 'connected' && info) {
				this.setState(p, info.relayed ? 'relayed' : 'direct', info.rttMs);
			}
		} catch {
			// closed meanwhile
		} finally {
			p.statsBusy = false;
		}
	}
}

/**
 * @param {unknown} v
 * @returns {v is number}
 */
function isDimension(v) {
	return typeof v === 'number' && Number.isFinite(v) && v >= 16 && v <= 8192;
}

/**
 * How much to scale a video down so that it is sent no larger than it is
 * shown (never up, never below 1/8).
 * @param {MediaStreamTrack} track
 * @param {RemoteView | undefined} view
 */
function scaleFor(track, view) {
	if (!view || !view.width || !view.height) {
		return 1;
	}
	const s = track.getSettings();
	if (!s.width || !s.height) {
		return 1;
	}
	const scale = Math.min(s.width / view.width, s.height / view.height);
	return Math.min(8, Math.max(1, Math.floor(scale * 4) / 4));
}

/**
 * Finds the selected candidate pair in a stats report.
 * @param {RTCStatsReport} report
 * @returns {{ relayed: boolean, rttMs: number | null } | null}
 */
export function pairInfo(report) {
	/** @type {any} */
	let pair = null;
	report.forEach((/** @type {any} */ s) => {
		if (s.type === 'transport' && s.selectedCandidatePairId) {
			pair = report.get(s.selectedCandidatePairId) ?? pair;
		}
	});
	if (!pair) {
		report.forEach((/** @type {any} */ s) => {
			if (!pair && s.type === 'candidate-pair' && (s.selected || (s.nominated && s.state === 'succeeded'))) {
				pair = s;
			}
		});
	}
	if (!pair) {
		return null;
	}
	const local = report.get(pair.localCandidateId);
	const remote = report.get(pair.remoteCandidateId);
	const relayed = local?.candidateType === 'relay' || remote?.candidateType === 'relay';
	const rtt = typeof pair.currentRoundTripTime === 'number' ? Math.round(pair.currentRoundTripTime * 1000) : null;
	return { relayed, rttMs: rtt };
}
