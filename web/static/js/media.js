// @ts-check
/**
 * @file Local capture (microphone, camera, screen), device lists, speaking
 * detection, per-participant playback volume and visibility of videos.
 *
 * Nothing here runs per frame: speaking detection reads levels a few times a
 * second from one timer, only while there is something to watch; volume is a
 * property of an `<audio>` element (Web Audio is used only for volumes above
 * 100 %); hidden videos are reported so the caller can pause them and ask
 * the sender to stop encoding them (Mesh#setRemoteView).
 */

/** @typedef {import('./mesh.js').MediaKind} MediaKind */
/** @typedef {{ deviceId: string, label: string, groupId: string }} Device */
/** @typedef {{ microphones: Device[], cameras: Device[], speakers: Device[] }} DeviceLists */

/**
 * Event details of LocalMedia.
 * @typedef {{ kind: MediaKind, track: MediaStreamTrack | null }} TrackChangeDetail
 * @typedef {{ kind: MediaKind, track: MediaStreamTrack }} EndedDetail
 * @typedef {{
 *   trackchange: CustomEvent<TrackChangeDetail>,
 *   ended: CustomEvent<EndedDetail>,
 *   devicechange: CustomEvent<DeviceLists>,
 * }} LocalMediaEventMap
 */

/**
 * Camera capture constraints for a room of roomSize people (self
 * included): captured at about the size a tile is shown at, smaller and
 * slower as the room grows.
 * @param {number} roomSize
 * @returns {MediaTrackConstraints}
 */
export function cameraConstraints(roomSize) {
	if (roomSize <= 3) {
		return { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 24, max: 24 } };
	}
	if (roomSize <= 5) {
		return { width: { ideal: 480 }, height: { ideal: 270 }, frameRate: { ideal: 20, max: 20 } };
	}
	return { width: { ideal: 320 }, height: { ideal: 180 }, frameRate: { ideal: 15, max: 15 } };
}

/** Screen capture: full detail, few frames. */
export const SCREEN_CONSTRAINTS = /** @type {const} */ ({
	width: { max: 1920 },
	height: { max: 1080 },
	frameRate: { ideal: 8, max: 10 },
});

/** Microphone processing suited to a call. */
export const MIC_CONSTRAINTS = /** @type {const} */ ({
	echoCancellation: true,
	noiseSuppression: true,
	autoGainControl: true,
	channelCount: { ideal: 1 },
});

/**
 * The user's own media: microphone, camera and screen, each on and off
 * independently. Dispatches:
 * - "trackchange" {kind, track} whenever the track of a kind starts, is
 *   replaced (another device) or stops (track null) — hand it to
 *   Mesh#setLocalTrack;
 * - "ended" {kind, track} when a track ended without us stopping it: the
 *   screen share was stopped from the browser's own controls, a device was
 *   unplugged or its permission revoked ("trackchange" with null follows);
 * - "devicechange" {microphones, cameras, speakers} when devices come or go.
 */
export class LocalMedia extends EventTarget {
	/**
	 * @param {object} [options]
	 * @param {MediaDevices} [options.mediaDevices]
	 * @param {number} [options.roomSize] people in the room, for the camera's size
	 */
	constructor({ mediaDevices = navigator.mediaDevices, roomSize = 2 } = {}) {
		super();
		this.devicesApi = mediaDevices;
		this.roomSize = roomSize;
		/** @type {Map<MediaKind, MediaStreamTrack>} */
		this.tracks = new Map();
		/** @type {Map<MediaKind, string>} the device chosen per kind ("" for the default) */
		this.chosen = new Map();
		this.onDeviceChange = () => {
			this.devices().then((lists) => this.emit('devicechange', lists), () => {});
		};
		this.devicesApi?.addEventListener?.('devicechange', this.onDeviceChange);
	}

	/**
	 * @template {keyof LocalMediaEventMap} K
	 * @param {K} type
	 * @param {(ev: LocalMediaEventMap[K]) => void} listener
	 * @param {AddEventListenerOptions} [options]
	 */
	on(type, listener, options) {
		this.addEventListener(type, /** @type {EventListener} */ (listener), options);
	}

	/**
	 * @template {keyof LocalMediaEventMap} K
	 * @param {K} type
	 * @param {LocalMediaEventMap[K]['detail']} detail
	 */
	emit(type, detail) {
		this.dispatchEvent(new CustomEvent(type, { detail }));
	}

	/**
	 * The live track of a kind, or null.
	 * @param {MediaKind} kind
	 */
	track(kind) {
		return this.tracks.get(kind) ?? null;
	}

	/**
	 * Turns the microphone on (or switches it to another device).
	 * @param {string} [deviceId] "" or undefined for the default
	 * @returns {Promise<MediaStreamTrack>}
	 */
	async startMicrophone(deviceId) {
		const id = deviceId ?? this.chosen.get('mic') ?? '';
		const stream = await this.devicesApi.getUserMedia({
			audio: { ...MIC_CONSTRAINTS, ...(id ? { deviceId: { exact: id } } : {}) },
		});
		this.chosen.set('mic', id);
		return this.install('mic', stream.getAudioTracks()[0], stream);
	}

	/**
	 * Turns the camera on (or switches it to another device).
	 * @param {string} [deviceId] "" or undefined for the default
	 * @returns {Promise<MediaStreamTrack>}
	 */
	async startCamera(deviceId) {
		const id = deviceId ?? this.chosen.get('camera') ?? '';
		const stream = await this.devicesApi.getUserMedia({
			video: { ...cameraConstraints(this.roomSize), ...(id ? { deviceId: { exact: id } } : {}) },
		});
		this.chosen.set('camera', id);
		const track = stream.getVideoTracks()[0];
		if (track) {
			track.contentHint = 'motion';
		}
		return this.install('camera', track, stream);
	}

	/**
	 * Starts sharing the screen (the browser asks the user what to share),
	 * with its audio when the browser offers it and audio is true.
	 * @param {{ audio?: boolean }} [options]
	 * @returns {Promise<{ video: MediaStreamTrack, audio: MediaStreamTrack | null }>}
	 */
	async startScreen({ audio = true } = {}) {
		/** @type {DisplayMediaStreamOptions & Record<string, unknown>} */
		const options = {
			video: { ...SCREEN_CONSTRAINTS },
			audio: audio ? { echoCancellation: false, noiseSuppression: false, autoGainControl: false } : false,
			// Hints Chromium understands; others ignore them.
			systemAudio: audio ? 'include' : 'exclude',
			selfBrowserSurface: 'exclude',
			surfaceSwitching: 'include',
		};
		const stream = await this.devicesApi.getDisplayMedia(options);
		const video = stream.getVideoTracks()[0];
		if (!video) {
			stream.getTracks().forEach((t) => t.stop());
			throw new Error('the browser shared no video');
		}
		video.contentHint = 'detail';
		const audioTrack = stream.getAudioTracks()[0] ?? null;
		this.install('screen', video, stream);
		if (audioTrack) {
			this.install('screen-audio', audioTrack, stream);
		} else {
			this.stop('screen-audio');
		}
		return { video, audio: audioTrack };
	}

	/**
	 * Stops a kind (stopping "screen" stops its audio too).
	 * @param {MediaKind} kind
	 */
	stop(kind) {
		const track = this.tracks.get(kind);
		if (track) {
			this.tracks.delete(kind);
			track.onended = null;
			track.stop();
			this.emit('trackchange', { kind, track: null });
		}
		if (kind === 'screen') {
			this.stop('screen-audio');
		}
	}

	/** Stops everything. */
	stopAll() {
		for (const kind of [...this.tracks.keys()]) {
			this.stop(kind);
		}
	}

	/**
	 * Mutes or unmutes the microphone without renegotiating (silence is sent).
	 * @param {boolean} enabled
	 */
	setMicrophoneEnabled(enabled) {
		const t = this.tracks.get('mic');
		if (t) {
			t.enabled = enabled;
		}
	}

	/**
	 * Adapts the camera's capture size to the room's size.
	 * @param {number} roomSize
	 */
	async setRoomSize(roomSize) {
		const before = cameraConstraints(this.roomSize);
		this.roomSize = roomSize;
		const after = cameraConstraints(roomSize);
		const cam = this.tracks.get('camera');
		if (cam && JSON.stringify(before) !== JSON.stringify(after)) {
			const id = this.chosen.get('camera');
			await cam.applyConstraints({ ...after, ...(id ? { deviceId: { exact: id } } : {}) }).catch(() => {});
		}
	}

	/**
	 * The available devices. Labels are empty until the user granted access
	 * to one device of the kind.
	 * @returns {Promise<DeviceLists>}
	 */
	async devices() {
		const all = await this.devicesApi.enumerateDevices();
		/** @param {MediaDeviceKind} k */
		const of = (k) => all.filter((d) => d.kind === k && d.deviceId !== '')
			.map((d) => ({ deviceId: d.deviceId, label: d.label, groupId: d.groupId }));
		return { microphones: of('audioinput'), cameras: of('videoinput'), speakers: of('audiooutput') };
	}

	/** Stops everything and forgets the device listener. */
	close() {
		this.stopAll();
		this.devicesApi?.removeEventListener?.('devicechange', this.onDeviceChange);
	}

	/**
	 * Makes track the one of its kind, stopping the previous one, and
	 * watches for its end.
	 * @param {MediaKind} kind
	 * @param {MediaStreamTrack | undefined} track
	 * @param {MediaStream} stream
	 * @returns {MediaStreamTrack}
	 */
	install(kind, track, stream) {
		if (!track) {
			stream.getTracks().forEach((t) => t.stop());
			throw new Error(`no ${kind} track was obtained`);
		}
		const old = this.tracks.get(kind);
		if (old && old !== track) {
			old.onended = null;
			old.stop();
		}
		this.tracks.set(kind, track);
		track.onended = () => {
			if (this.tracks.get(kind) !== track) {
				return;
			}
			this.tracks.delete(kind);
			track.onended = null;
			track.stop();
			this.emit('ended', { kind, track });
			this.emit('trackchange', { kind, track: null });
			if (kind === 'screen') {
				this.stop('screen-audio');
			}
		};
		this.emit('trackchange', { kind, track });
		return track;
	}
}

/**
 * Speaking detection, cheaply: one timer (two reads a second, none while
 * nothing is watched or the page is hidden). A remote participant's level
 * is the level of its last audio packet, as its RTP receiver knows it
 * (getSynchronizationSources: no decoding work, no graph; the audio energy
 * of getStats would also catch sounds shorter than a read's interval, but
 * a getStats call per receiver costs Chromium a whole collection of the
 * connection's statistics, which measured several points of a core per
 * participant). The local microphone's from one AnalyserNode holding the
 * samples since the last read, its AudioContext suspended while the page
 * is hidden. Levels are never sent anywhere.
 *
 * Dispatches "speaking" {id, speaking} on each change.
 */
export class SpeakingDetector extends EventTarget {
	/**
	 * @param {object} [options]
	 * @param {number} [options.intervalMs] time between reads (default 500)
	 * @param {number} [options.threshold] linear audio level (0–1) counted as speech (default 0.01, −40 dBov)
	 * @param {number} [options.holdMs] how long speaking stays on after the level fell (default 1000)
	 */
	constructor({ intervalMs = 500, threshold = 0.01, holdMs = 1000 } = {}) {
		super();
		this.intervalMs = intervalMs;
		this.threshold = threshold;
		this.holdMs = holdMs;
		/** @type {Map<string, { read: () => number, lastLoud: number, speaking: boolean, dispose: () => void }>} */
		this.sources = new Map();
		/** @type {ReturnType<typeof setInterval> | undefined} */
		this.timer = undefined;
		/** @type {AudioContext | undefined} */
		this.ctx = undefined;
		this.onVisibility = () => {
			if (document.hidden) {
				this.ctx?.suspend().catch(() => {});
			} else if (this.sources.size > 0) {
				this.ctx?.resume().catch(() => {});
			}
		};
		document.addEventListener('visibilitychange', this.onVisibility);
	}

	/**
	 * Watches a remote participant's audio receiver.
	 * @param {string} id
	 * @param {RTCRtpReceiver} receiver
	 */
	addReceiver(id, receiver) {
		this.add(id, () => {
			let level = 0;
			const now = performance.now();
			for (const s of receiver.getSynchronizationSources()) {
				// Only a source heard in the last second counts. Chromium
				// stamps sources in wall-clock time, the specification relative
				// to the time origin: accept either.
				const age = Math.min(Math.abs(now - s.timestamp), Math.abs(performance.timeOrigin + now - s.timestamp));
				if (typeof s.audioLevel === 'number' && age < 1000) {
					level = Math.max(level, s.audioLevel);
				}
			}
			return level;
		}, () => {});
	}

	/**
	 * Watches a local audio track (the microphone) through one AnalyserNode.
	 * @param {string} id
	 * @param {MediaStreamTrack} track
	 */
	addTrack(id, track) {
		const ctx = this.ctx ?? (this.ctx = new AudioContext({ latencyHint: 'playback' }));
		const source = ctx.createMediaStreamSource(new MediaStream([track]));
		const analyser = ctx.createAnalyser();
		// Enough samples to cover the time between reads, so that a short
		// sound between two reads is not missed: the level is that of the
		// loudest 10 ms among them.
		analyser.fftSize = Math.min(32768, 2 ** Math.ceil(Math.log2(ctx.sampleRate * this.intervalMs / 1000)));
		source.connect(analyser);
		const buf = new Float32Array(analyser.fftSize);
		const block = Math.max(1, Math.round(ctx.sampleRate / 100));
		this.add(id, () => {
			if (!track.enabled || track.readyState !== 'live') {
				return 0;
			}
			analyser.getFloatTimeDomainData(buf);
			let loudest = 0;
			for (let start = 0; start < buf.length; start += block) {
				const end = Math.min(buf.length, start + block);
				let sum = 0;
				for (let i = start; i < end; i++) {
					sum += buf[i] * buf[i];
				}
				loudest = Math.max(loudest, sum / (end - start));
			}
			return Math.sqrt(loudest);
		}, () => {
			source.disconnect();
			analyser.disconnect();
		});
	}

	/**
	 * Stops watching id.
	 * @param {string} id
	 */
	remove(id) {
		const s = this.sources.get(id);
		if (!s) {
			return;
		}
		this.sources.delete(id);
		s.dispose();
		if (s.speaking) {
			this.dispatchEvent(new CustomEvent('speaking', { detail: { id, speaking: false } }));
		}
		if (this.sources.size === 0) {
			clearInterval(this.timer);
			this.timer = undefined;
		}
		if (this.ctx && ![...this.sources.keys()].length) {
			this.ctx.suspend().catch(() => {});
		}
	}

	/**
	 * Whether id is speaking now.
	 * @param {string} id
	 */
	isSpeaking(id) {
		return this.sources.get(id)?.speaking ?? false;
	}

	close() {
		for (const id of [...this.sources.keys()]) {
			this.remove(id);
		}
		document.removeEventListener('visibilitychange', this.onVisibility);
		this.ctx?.close().catch(() => {});
		this.ctx = undefined;
	}

	/**
	 * @param {string} id
	 * @param {() => number} read the current level (0–1)
	 * @param {() => void} dispose
	 */
	add(id, read, dispose) {
		this.remove(id);
		this.sources.set(id, { read, lastLoud: -Infinity, speaking: false, dispose });
		if (!document.hidden) {
			this.ctx?.resume().catch(() => {});
		}
		if (this.timer === undefined) {
			this.timer = setInterval(() => this.tick(), this.intervalMs);
		}
	}

	tick() {
		if (document.hidden) {
			return; // nobody sees the indicators
		}
		const now = performance.now();
		for (const [id, s] of this.sources) {
			let level = 0;
			try {
				level = s.read();
			} catch {
				// receiver gone
			}
			if (level >= this.threshold) {
				s.lastLoud = now;
			}
			const speaking = now - s.lastLoud < this.holdMs;
			if (speaking !== s.speaking) {
				s.speaking = speaking;
				this.dispatchEvent(new CustomEvent('speaking', { detail: { id, speaking } }));
			}
		}
	}
}

/**
 * Plays remote participants' audio with a local volume of 0–200 % and a
 * mute per participant. Up to 100 % it is a plain `<audio>` element's
 * volume; above, that participant's audio goes through a GainNode (the
 * element stays, muted, as Chromium needs a sink to pull remote audio).
 *
 * Dispatches "blocked" {id} when the browser refused to start playback
 * without a user gesture: call resume() from a click.
 */
export class RemoteAudio extends EventTarget {
	constructor() {
		super();
		/** @type {Map<string, Map<string, { el: HTMLAudioElement, stream: MediaStream, source?: MediaStreamAudioSourceNode, gain?: GainNode }>>} */
		this.byPeer = new Map();
		/** @type {Map<string, { volume: number, muted: boolean }>} */
		this.settings = new Map();
		/** @type {AudioContext | undefined} */
		this.ctx = undefined;
		this.sinkId = '';
	}

	/**
	 * Plays one audio stream of a participant (its microphone, its screen's
	 * audio…). Replaces the stream of the same key.
	 * @param {string} id participant
	 * @param {string} key which of its streams ("mic", "screen-audio")
	 * @param {MediaStream} stream
	 */
	attach(id, key, stream) {
		this.detach(id, key);
		const el = document.createElement('audio');
		el.autoplay = true;
		el.srcObject = stream;
		el.dataset.peer = id;
		el.dataset.kind = key;
		let entries = this.byPeer.get(id);
		if (!entries) {
			entries = new Map();
			this.byPeer.set(id, entries);
		}
		entries.set(key, { el, stream });
		if (this.sinkId && 'setSinkId' in el) {
			/** @type {any} */ (el).setSinkId(this.sinkId).catch(() => {});
		}
		this.apply(id);
		this.play(id, el);
	}

	/**
	 * Stops playing a participant's stream (all of them when key is omitted).
	 * @param {string} id
	 * @param {string} [key]
	 */
	detach(id, key) {
		const entries = this.byPeer.get(id);
		if (!entries) {
			return;
		}
		for (const [k, e] of [...entries]) {
			if (key === undefined || k === key) {
				e.source?.disconnect();
				e.gain?.disconnect();
				e.el.pause();
				e.el.srcObject = null;
				entries.delete(k);
			}
		}
		if (entries.size === 0) {
			this.byPeer.delete(id);
		}
		this.suspendIfIdle();
	}

	/**
	 * Sets a participant's volume, 0 to 2 (200 %).
	 * @param {string} id
	 * @param {number} volume
	 */
	setVolume(id, volume) {
		const v = Math.min(2, Math.max(0, Number.isFinite(volume) ? volume : 1));
		this.settings.set(id, { ...this.setting(id), volume: v });
		this.apply(id);
	}

	/**
	 * @param {string} id
	 * @param {boolean} muted
	 */
	setMuted(id, muted) {
		this.settings.set(id, { ...this.setting(id), muted });
		this.apply(id);
	}

	/**
	 * A participant's volume (0–2) and mute.
	 * @param {string} id
	 */
	setting(id) {
		return this.settings.get(id) ?? { volume: 1, muted: false };
	}

	/**
	 * The `<audio>` elements playing a participant (for tests and
	 * diagnostics; they are not in the document).
	 * @param {string} id
	 */
	elements(id) {
		return [...(this.byPeer.get(id)?.values() ?? [])].map((e) => e.el);
	}

	/**
	 * Plays everything through this output device (where supported).
	 * @param {string} deviceId
	 */
	async setOutputDevice(deviceId) {
		this.sinkId = deviceId;
		const all = [];
		for (const entries of this.byPeer.values()) {
			for (const e of entries.values()) {
				if ('setSinkId' in e.el) {
					all.push(/** @type {any} */ (e.el).setSinkId(deviceId));
				}
			}
		}
		if (this.ctx && 'setSinkId' in this.ctx) {
			all.push(/** @type {any} */ (this.ctx).setSinkId(deviceId));
		}
		await Promise.all(all);
	}

	/** Retries playback after a user gesture. */
	resume() {
		this.ctx?.resume().catch(() => {});
		for (const [id, entries] of this.byPeer) {
			for (const e of entries.values()) {
				this.play(id, e.el);
			}
		}
	}

	/** Stops all playback. */
	close() {
		for (const id of [...this.byPeer.keys()]) {
			this.detach(id);
		}
		this.ctx?.close().catch(() => {});
		this.ctx = undefined;
	}

	/**
	 * @param {string} id
	 * @param {HTMLAudioElement} el
	 */
	play(id, el) {
		el.play().catch((err) => {
			if (err && err.name === 'NotAllowedError') {
				this.dispatchEvent(new CustomEvent('blocked', { detail: { id } }));
			}
		});
	}

	/**
	 * Applies a participant's setting to its elements.
	 * @param {string} id
	 */
	apply(id) {
		const { volume, muted } = this.setting(id);
		const v = muted ? 0 : volume;
		for (const e of this.byPeer.get(id)?.values() ?? []) {
			if (v <= 1) {
				e.source?.disconnect();
				e.gain?.disconnect();
				e.source = e.gain = undefined;
				e.el.muted = v === 0;
				e.el.volume = v;
			} else {
				const ctx = this.ctx ?? (this.ctx = new AudioContext({ latencyHint: 'interactive' }));
				ctx.resume().catch(() => {});
				if (!e.source || !e.gain) {
					e.source = ctx.createMediaStreamSource(e.stream);
					e.gain = ctx.createGain();
					e.source.connect(e.gain).connect(ctx.destination);
				}
				e.gain.gain.value = v;
				e.el.muted = true;
				e.el.volume = 1;
			}
		}
		this.suspendIfIdle();
	}

	suspendIfIdle() {
		if (!this.ctx) {
			return;
		}
		for (const entries of this.byPeer.values()) {
			for (const e of entries.values()) {
				if (e.gain) {
					return;
				}
			}
		}
		this.ctx.suspend().catch(() => {});
	}
}

/**
 * Reports whether an element is visible (in the viewport, page shown), so
 * that a hidden video can be paused and its sender told to stop
 * (Mesh#setRemoteView). One IntersectionObserver for all elements.
 */
export class VisibilityWatcher {
	constructor() {
		/** @type {Map<Element, { intersecting: boolean, visible: boolean | undefined, onChange: (visible: boolean, width: number, height: number) => void }>} */
		this.watched = new Map();
		this.observer = new IntersectionObserver((entries) => {
			for (const e of entries) {
				const w = this.watched.get(e.target);
				if (w) {
					w.intersecting = e.isIntersecting;
					this.report(e.target);
				}
			}
		});
		this.onVisibility = () => {
			for (const el of this.watched.keys()) {
				this.report(el);
			}
		};
		document.addEventListener('visibilitychange', this.onVisibility);
	}

	/**
	 * Calls onChange(visible, widthPx, heightPx) now-ish and on each change.
	 * Sizes are in device pixels.
	 * @param {Element} el
	 * @param {(visible: boolean, width: number, height: number) => void} onChange
	 */
	watch(el, onChange) {
		this.watched.set(el, { intersecting: false, visible: undefined, onChange });
		this.observer.observe(el);
	}

	/** @param {Element} el */
	unwatch(el) {
		this.watched.delete(el);
		this.observer.unobserve(el);
	}

	close() {
		this.observer.disconnect();
		this.watched.clear();
		document.removeEventListener('visibilitychange', this.onVisibility);
	}

	/** @param {Element} el */
	report(el) {
		const w = this.watched.get(el);
		if (!w) {
			return;
		}
		const visible = w.intersecting && document.visibilityState === 'visible';
		if (visible !== w.visible) {
			w.visible = visible;
			const r = el.getBoundingClientRect();
			const dpr = window.devicePixelRatio || 1;
			w.onChange(visible, Math.round(r.width * dpr), Math.round(r.height * dpr));
		}
	}
}
