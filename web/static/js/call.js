// @ts-check
/**
 * @file The call: wires the mesh (mesh.js), local and remote media
 * (media.js) and the chat (chat.js) into the room page (room.js), with the
 * stream grid (streams.js), the media controls (controls.js), the chat panel
 * (chatview.js) and each member's volume and mute in the member list.
 *
 * room.js imports this module once the room is entered and calls mount.
 * Everything here ends with the room page (the cleanup mount returns, and
 * room.lifetime).
 */

import { Chat } from './chat.js';
import { ChatView } from './chatview.js';
import { MediaControls } from './controls.js';
import { h } from './dom.js';
import { icon, setIcon } from './icons.js';
import { LocalMedia, RemoteAudio, SpeakingDetector } from './media.js';
import { Mesh } from './mesh.js';
import { SELF, StreamGrid } from './streams.js';
import { RoomTrust, Signer, keyring, sdpFingerprint } from './trust.js';

/** @typedef {import('./room.js').RoomSession} RoomSession */
/** @typedef {import('./room.js').Sharing} Sharing */
/** @typedef {import('./mesh.js').MediaKind} MediaKind */

/** @type {Record<MediaKind, Sharing | null>} */
const SHARING = { 'mic': 'microphone', 'camera': 'camera', 'screen': 'screen', 'screen-audio': null };

/**
 * Starts the call UI in the room page, once this member's identity key
 * and certificate for the room are at hand (trust.js).
 * @param {RoomSession} room
 * @returns {Promise<() => void>} the cleanup
 */
export async function mount(room) {
	const signal = room.lifetime;
	const selfId = room.selfId;
	/** @param {unknown} err */
	const without = (err) => {
		console.warn('lepeerchat: no identity key or certificate kept (an insecure context?)', err);
		return null;
	};
	const [identity, certificate, seen] = await Promise.all([
		keyring.identity(room.roomId, selfId).catch(without),
		keyring.certificate(room.roomId, selfId).catch(without),
		keyring.seen(room.roomId),
	]);
	/** Names of everyone seen in this room, kept after they leave (for the chat). */
	/** @type {Map<string, string>} */
	const names = new Map();
	const learnNames = () => {
		let changed = false;
		for (const m of room.members.values()) {
			if (m.name && names.get(m.id) !== m.name) {
				names.set(m.id, m.name);
				changed = true;
			}
		}
		return changed;
	};
	learnNames();
	/** @param {string} id */
	const nameOf = (id) => names.get(id) ?? '';
	const onlineCount = () => room.list().filter((m) => m.online).length;

	const local = new LocalMedia({ roomSize: Math.max(2, onlineCount()) });
	const remoteAudio = new RemoteAudio();
	const speaking = new SpeakingDetector();

	/** What each member shares and whether it speaks, for the member list. */
	/** @type {Map<string, {speaking: boolean, sharing: Set<MediaKind>}>} */
	const activity = new Map();
	/**
	 * @param {string} id
	 * @param {(a: {speaking: boolean, sharing: Set<MediaKind>}) => void} change
	 */
	const setActivity = (id, change) => {
		const a = activity.get(id) ?? { speaking: false, sharing: new Set() };
		change(a);
		activity.set(id, a);
		/** @type {Sharing[]} */
		const sharing = [];
		for (const kind of /** @type {MediaKind[]} */ (['mic', 'camera', 'screen'])) {
			const s = SHARING[kind];
			if (s && a.sharing.has(kind)) {
				sharing.push(s);
			}
		}
		room.setMemberActivity(id, { speaking: a.speaking, sharing });
	};

	// ---- the page's parts --------------------------------------------------

	const grid = new StreamGrid(room.elements.streams, {
		nameOf: (id) => nameOf(id) || 'Someone',
		rankOf: (id) => {
			let i = 0;
			for (const m of room.members.keys()) {
				if (m === id) {
					return i;
				}
				i++;
			}
			return i;
		},
		onView: (id, kind, view) => mesh?.setRemoteView(id, kind, view),
	});
	const controls = new MediaControls(room.elements.mediaControls, { local, remoteAudio });
	const volumes = new MemberVolumes(remoteAudio, nameOf);

	/** The safety code, and who changed keys: see trust.js. */
	const trust = new RoomTrust({
		roomId: room.roomId,
		selfId,
		identity,
		selfBound: () => !!room.members.get(selfId)?.key,
		certificate,
		keyring,
		seen,
		panel: room.safety,
		members: () => room.peers(),
		fingerprintOf: (id) => {
			const pc = mesh?.connection(id);
			return pc?.connectionState === 'connected' ? sdpFingerprint(pc.currentRemoteDescription?.sdp ?? '') : null;
		},
		warn: (id, text, acknowledge) => room.setMemberWarning(id, text, acknowledge),
	});

	/** The chat outlives a mesh replaced after "detached": it sends through the current one. */
	const chat = new Chat({
		selfId,
		roomId: room.roomId,
		signer: new Signer(identity?.privateKey ?? null, (author) => trust.keysOf(author)),
		transport: {
			send: (id, data) => mesh?.send(id, data) ?? false,
			broadcast: (data) => mesh?.broadcast(data) ?? [],
		},
	});
	const chatView = new ChatView(room.elements.chat, {
		chat,
		nameOf,
		othersOnline: () => room.peers().filter((m) => m.online).length,
	});

	const hint = room.elements.streams.parentElement?.querySelector('.stage-hint') ?? null;
	const hintText = hint?.textContent ?? '';
	/** Says "no video" rather than "nobody shares" when only sound is shared. */
	const updateHint = () => {
		if (!hint) {
			return;
		}
		let audio = !!local.track('mic');
		for (const a of activity.values()) {
			audio ||= a.sharing.has('mic') || a.sharing.has('screen-audio');
		}
		const text = audio ? 'Nobody is sharing a camera or screen yet.' : hintText;
		if (hint.textContent !== text) {
			hint.textContent = text;
		}
	};

	// ---- the mesh ------------------------------------------------------------

	/** @type {Mesh | null} null while another tab has the room */
	let mesh = null;

	/** @returns {Mesh} */
	const startMesh = () => {
		const m = new Mesh({
			selfId,
			signaller: { send: (to, d) => room.sendSignal(to, d) },
			iceServers: room.iceServers,
			...(certificate ? { certificates: [certificate] } : {}),
		});
		m.on('peerstate', (ev) => {
			room.setPeerState(ev.detail.id, ev.detail.state, ev.detail.rttMs);
			trust.update();
		});
		m.on('peerremoved', (ev) => {
			const id = ev.detail.id;
			room.setPeerState(id, null);
			trust.update();
			chat.peerRemoved(id);
			grid.removeMember(id);
			remoteAudio.detach(id);
			speaking.remove(id);
			volumes.show(id, false);
			if (activity.has(id)) {
				setActivity(id, (a) => {
					a.speaking = false;
					a.sharing.clear();
				});
			}
			updateHint();
		});
		m.on('track', (ev) => {
			const { id, kind, stream, receiver } = ev.detail;
			if (kind === 'camera' || kind === 'screen') {
				grid.show(id, kind, stream);
			} else {
				remoteAudio.attach(id, kind, stream);
				if (kind === 'mic') {
					speaking.addReceiver(id, receiver);
					grid.setAudible(id, true);
				}
				volumes.show(id, true);
			}
			setActivity(id, (a) => a.sharing.add(kind));
			updateHint();
		});
		m.on('trackended', (ev) => {
			const { id, kind } = ev.detail;
			if (kind === 'camera' || kind === 'screen') {
				grid.remove(id, kind);
			} else {
				remoteAudio.detach(id, kind);
				if (kind === 'mic') {
					speaking.remove(id);
					grid.setAudible(id, false);
				}
				volumes.show(id, remoteAudio.elements(id).length > 0);
			}
			if (activity.has(id)) {
				setActivity(id, (a) => a.sharing.delete(kind));
			}
			updateHint();
		});
		m.on('channelopen', (ev) => chat.peerOpened(ev.detail.id));
		m.on('message', (ev) => chat.handleMessage(ev.detail.id, ev.detail.data));
		m.on('error', (ev) => console.debug('lepeerchat: mesh', ev.detail.context, ev.detail.id, ev.detail.error));
		// What is already on.
		for (const kind of /** @type {MediaKind[]} */ (['mic', 'camera', 'screen', 'screen-audio'])) {
			const t = local.track(kind);
			if (t) {
				m.setLocalTrack(kind, t).catch(() => {});
			}
		}
		for (const member of room.peers()) {
			if (member.online) {
				m.addPeer(member.id);
			}
		}
		return m;
	};
	mesh = startMesh();
	trust.update();

	room.on('signal', ({ from, data }) => mesh?.handleSignal(from, data), { signal });
	room.on('member.joined', ({ member }) => mesh?.addPeer(member.id), { signal });
	room.on('member.connected', ({ member }) => mesh?.addPeer(member.id), { signal });
	room.on('member.disconnected', ({ member }) => mesh?.peerOffline(member.id), { signal });
	room.on('member.left', ({ member }) => mesh?.removePeer(member.id), { signal });
	room.on('iceservers', ({ iceServers }) => mesh?.setIceServers(iceServers), { signal });
	room.on(
		'members',
		() => {
			local.setRoomSize(Math.max(2, onlineCount())).catch(() => {});
			trust.update();
			if (learnNames()) {
				grid.renameAll();
				chatView.renameAll();
			}
			volumes.refresh();
			// The rows are redrawn from scratch only for new members: put back
			// what the call shows in them.
			for (const id of activity.keys()) {
				if (room.members.has(id)) {
					setActivity(id, () => {});
				}
			}
		},
		{ signal },
	);
	room.on(
		'rejoined',
		() => {
			if (!mesh) {
				mesh = startMesh();
				return;
			}
			for (const member of room.peers()) {
				if (member.online) {
					mesh.addPeer(member.id);
				}
			}
			mesh.restartIce();
		},
		{ signal },
	);
	room.on(
		'detached',
		() => {
			// Another tab of this browser has the room now: it has the call.
			mesh?.close();
			mesh = null;
			local.stopAll();
			controls.say('The call goes on in the other tab. Choose “Use it here” to bring it back.');
		},
		{ signal },
	);
	const onPageHide = () => mesh?.close();
	window.addEventListener('pagehide', onPageHide);
	// A page restored from the back-forward cache has closed connections.
	const onPageShow = (/** @type {PageTransitionEvent} */ ev) => {
		if (ev.persisted) {
			location.reload();
		}
	};
	window.addEventListener('pageshow', onPageShow);

	// ---- my media ------------------------------------------------------------

	local.on('trackchange', (ev) => {
		const { kind, track } = ev.detail;
		mesh?.setLocalTrack(kind, track).catch((err) => console.debug('lepeerchat: setLocalTrack', kind, err));
		if (kind === 'camera') {
			grid.showSelf(track);
		}
		if (kind === 'mic') {
			if (track) {
				speaking.addTrack(SELF, track);
			} else {
				speaking.remove(SELF);
			}
			grid.setAudible(SELF, !!track);
		}
		setActivity(selfId, (a) => {
			if (track) {
				a.sharing.add(kind);
			} else {
				a.sharing.delete(kind);
			}
		});
		controls.update();
		updateHint();
	});
	local.on('ended', (ev) => {
		const words = {
			'screen': 'Your screen share was stopped from the browser.',
			'screen-audio': 'The sound of your screen share stopped.',
			'camera': 'Your camera stopped: it was unplugged, or the browser withdrew its access.',
			'mic': 'Your microphone stopped: it was unplugged, or the browser withdrew its access.',
		};
		controls.say(words[ev.detail.kind]);
	});
	local.on('devicechange', (ev) => controls.showDevices(ev.detail));

	speaking.addEventListener('speaking', (ev) => {
		const { id, speaking: on } = /** @type {CustomEvent<{id: string, speaking: boolean}>} */ (ev).detail;
		const member = id === SELF ? selfId : id;
		grid.setSpeaking(id, on);
		setActivity(member, (a) => {
			a.speaking = on;
		});
	});
	remoteAudio.addEventListener('blocked', () => controls.soundBlocked());

	return () => {
		window.removeEventListener('pagehide', onPageHide);
		window.removeEventListener('pageshow', onPageShow);
		mesh?.close();
		mesh = null;
		trust.close();
		local.close();
		remoteAudio.close();
		speaking.close();
		grid.close();
		volumes.close();
		chatView.close();
	};
}

/**
 * Each member's volume (0–200 %) and mute, local only, in their row of the
 * member list; shown while I hear them.
 */
class MemberVolumes {
	/**
	 * @param {RemoteAudio} remoteAudio
	 * @param {(id: string) => string} nameOf
	 */
	constructor(remoteAudio, nameOf) {
		this.remoteAudio = remoteAudio;
		this.nameOf = nameOf;
		/** @type {Map<string, {box: HTMLElement, mute: HTMLButtonElement, range: HTMLInputElement, value: HTMLOutputElement}>} */
		this.controls = new Map();
		/** @type {Set<string>} members I hear */
		this.heard = new Set();
	}

	/**
	 * Shows or hides a member's controls.
	 * @param {string} id
	 * @param {boolean} on
	 */
	show(id, on) {
		if (on) {
			this.heard.add(id);
		} else {
			this.heard.delete(id);
		}
		this.place(id);
	}

	/** Puts the controls back in rows drawn anew, and renames them. */
	refresh() {
		for (const id of new Set([...this.heard, ...this.controls.keys()])) {
			this.place(id);
		}
	}

	/** @param {string} id */
	place(id) {
		const on = this.heard.has(id);
		let c = this.controls.get(id);
		if (!c && !on) {
			return;
		}
		if (!c) {
			c = this.build(id);
			this.controls.set(id, c);
		}
		c.box.hidden = !on;
		const row = memberRow(id);
		if (row && c.box.parentElement !== row) {
			row.append(c.box);
		}
		this.label(id);
	}

	/**
	 * @param {string} id
	 */
	build(id) {
		const { volume, muted } = this.remoteAudio.setting(id);
		const mute = h('button', { type: 'button', class: 'icon-button member-mute', 'aria-pressed': String(muted) }, icon(muted ? 'volume-off' : 'volume'));
		const range = h('input', { type: 'range', class: 'member-volume', min: '0', max: '200', step: '5', value: String(Math.round(volume * 100)) });
		const value = h('output', { class: 'member-volume-value' });
		const box = h('div', { class: 'member-audio', 'data-member-id': id }, mute, range, value);
		mute.addEventListener('click', () => {
			const now = !this.remoteAudio.setting(id).muted;
			this.remoteAudio.setMuted(id, now);
			this.label(id);
		});
		range.addEventListener('input', () => {
			this.remoteAudio.setVolume(id, Number(range.value) / 100);
			this.label(id);
		});
		return { box, mute, range, value };
	}

	/** @param {string} id */
	label(id) {
		const c = this.controls.get(id);
		if (!c) {
			return;
		}
		const name = this.nameOf(id) || 'this person';
		const { volume, muted } = this.remoteAudio.setting(id);
		const pct = `${Math.round(volume * 100)} %`;
		c.range.setAttribute('aria-label', `Volume of ${name}, for you only`);
		c.range.setAttribute('aria-valuetext', muted ? `${pct}, muted` : pct);
		c.value.textContent = muted ? 'Muted' : pct;
		c.mute.setAttribute('aria-label', `Mute ${name} for you`);
		c.mute.title = `Mute ${name} for you only`;
		if (c.mute.getAttribute('aria-pressed') !== String(muted)) {
			c.mute.setAttribute('aria-pressed', String(muted));
			setIcon(c.mute, muted ? 'volume-off' : 'volume');
		}
		c.box.classList.toggle('is-muted', muted);
	}

	close() {
		for (const c of this.controls.values()) {
			c.box.remove();
		}
		this.controls.clear();
	}
}

/**
 * A member's row in the member list (room.js keeps rows, and what is put
 * in them, while the member stays).
 * @param {string} id
 * @returns {HTMLElement | null}
 */
function memberRow(id) {
	const list = document.getElementById('member-list');
	if (!list) {
		return null;
	}
	for (const li of list.children) {
		if (li instanceof HTMLElement && li.dataset.memberId === id) {
			return li;
		}
	}
	return null;
}
