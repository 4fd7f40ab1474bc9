// @ts-check
/**
 * @file The stream grid of the room page: one tile per video (a remote
 * camera or screen, and my own camera as a preview), each with its name,
 * pin and full screen.
 *
 * Light on the device: a tile's video plays only while it is on screen
 * (VisibilityWatcher), and the sender is told when it is hidden and at what
 * size it is shown (onView, for Mesh#setRemoteView), so that it encodes
 * nothing for a hidden tile and no more pixels than shown (a ResizeObserver
 * follows pinning, full screen and window resizes). Nothing runs per frame,
 * no timer runs.
 */

import { h } from './dom.js';
import { icon, setIcon } from './icons.js';
import { VisibilityWatcher } from './media.js';

/** @typedef {'camera' | 'screen'} VideoKind */
/** @typedef {import('./mesh.js').RemoteView} RemoteView */

/** The id under which my own preview is kept. */
export const SELF = 'self';

/**
 * @typedef {object} Tile
 * @property {string} key
 * @property {string} id member id, or SELF
 * @property {VideoKind} kind
 * @property {HTMLElement} el the <figure>
 * @property {HTMLVideoElement} video
 * @property {HTMLElement} name
 * @property {HTMLButtonElement} pin
 * @property {HTMLButtonElement | null} full
 * @property {boolean | null} visible null until first seen
 * @property {{ width: number, height: number } | null} shownAt the size last told, in device pixels
 */

export class StreamGrid {
	/**
	 * @param {HTMLElement} container the empty #streams section
	 * @param {object} options
	 * @param {(id: string) => string} options.nameOf a member's name
	 * @param {(id: string) => number} options.rankOf a member's place in the room (joining order)
	 * @param {(id: string, kind: VideoKind, view: RemoteView) => void} options.onView
	 *   how a remote video is shown (never called for my own preview)
	 */
	constructor(container, { nameOf, rankOf, onView }) {
		this.container = container;
		this.nameOf = nameOf;
		this.rankOf = rankOf;
		this.onView = onView;
		/** @type {Map<string, Tile>} */
		this.tiles = new Map();
		/** @type {string | null} the pinned tile's key */
		this.pinned = null;
		/** @type {Set<string>} members speaking now */
		this.speaking = new Set();
		/** @type {Set<string>} members whose microphone I receive (or mine, as SELF) */
		this.audible = new Set();
		this.watcher = new VisibilityWatcher();
		/** @type {Map<Element, Tile>} remote tiles by their video */
		this.byVideo = new Map();
		this.resizer = new ResizeObserver((entries) => {
			for (const e of entries) {
				const tile = this.byVideo.get(e.target);
				const box = e.devicePixelContentBoxSize?.[0];
				const dpr = window.devicePixelRatio || 1;
				if (tile && tile.visible) {
					this.tellView(tile, box ? box.inlineSize : e.contentRect.width * dpr, box ? box.blockSize : e.contentRect.height * dpr);
				}
			}
		});
		this.onFullscreen = () => this.updateFullscreen();
		document.addEventListener('fullscreenchange', this.onFullscreen);
		container.classList.add('stream-grid');
	}

	/**
	 * Shows a remote member's video (replacing the one of the same kind).
	 * @param {string} id
	 * @param {VideoKind} kind
	 * @param {MediaStream} stream
	 */
	show(id, kind, stream) {
		const tile = this.tiles.get(key(id, kind)) ?? this.create(id, kind);
		if (tile.video.srcObject !== stream) {
			tile.video.srcObject = stream;
		}
		this.play(tile);
	}

	/**
	 * Shows my own camera as a preview, or removes it (null).
	 * @param {MediaStreamTrack | null} track
	 */
	showSelf(track) {
		if (!track) {
			this.remove(SELF, 'camera');
			return;
		}
		const tile = this.tiles.get(key(SELF, 'camera')) ?? this.create(SELF, 'camera');
		const current = /** @type {MediaStream | null} */ (tile.video.srcObject);
		if (!current || current.getVideoTracks()[0] !== track) {
			tile.video.srcObject = new MediaStream([track]);
		}
		this.play(tile);
	}

	/**
	 * @param {string} id
	 * @param {VideoKind} kind
	 */
	remove(id, kind) {
		const k = key(id, kind);
		const tile = this.tiles.get(k);
		if (!tile) {
			return;
		}
		if (document.fullscreenElement === tile.el) {
			document.exitFullscreen().catch(() => {});
		}
		this.watcher.unwatch(tile.video);
		this.resizer.unobserve(tile.video);
		this.byVideo.delete(tile.video);
		tile.video.pause();
		tile.video.srcObject = null;
		tile.el.remove();
		this.tiles.delete(k);
		if (this.pinned === k) {
			this.pinned = null;
		}
		this.arrange();
	}

	/**
	 * Removes every tile of a member.
	 * @param {string} id
	 */
	removeMember(id) {
		this.remove(id, 'camera');
		this.remove(id, 'screen');
		this.speaking.delete(id);
		this.audible.delete(id);
	}

	/** Updates the names shown (a member's name became known). */
	renameAll() {
		for (const tile of this.tiles.values()) {
			this.label(tile);
		}
	}

	/**
	 * @param {string} id member id or SELF
	 * @param {boolean} speaking
	 */
	setSpeaking(id, speaking) {
		if (speaking) {
			this.speaking.add(id);
		} else {
			this.speaking.delete(id);
		}
		this.tiles.get(key(id, 'camera'))?.el.classList.toggle('is-speaking', speaking);
	}

	/**
	 * Whether a member's microphone is heard (a crossed-out microphone shows
	 * on its camera tile otherwise).
	 * @param {string} id member id or SELF
	 * @param {boolean} on
	 */
	setAudible(id, on) {
		if (on) {
			this.audible.add(id);
		} else {
			this.audible.delete(id);
		}
		const tile = this.tiles.get(key(id, 'camera'));
		if (tile) {
			this.label(tile);
		}
	}

	/** Stops everything. */
	close() {
		for (const tile of [...this.tiles.values()]) {
			this.remove(tile.id, tile.kind);
		}
		this.watcher.close();
		this.resizer.disconnect();
		this.byVideo.clear();
		document.removeEventListener('fullscreenchange', this.onFullscreen);
	}

	// ---- internals -------------------------------------------------------

	/**
	 * @param {string} id
	 * @param {VideoKind} kind
	 * @returns {Tile}
	 */
	create(id, kind) {
		const k = key(id, kind);
		const self = id === SELF;
		const video = h('video', { playsinline: true, muted: true, autoplay: true, disablepictureinpicture: true });
		video.muted = true;
		const name = h('span', { class: 'tile-name' });
		const pin = h('button', { type: 'button', class: 'tile-button tile-pin', 'aria-pressed': 'false' }, icon('pin'));
		pin.addEventListener('click', () => this.togglePin(k));
		/** @type {HTMLButtonElement | null} */
		let full = null;
		if (canFullscreen(video)) {
			full = h('button', { type: 'button', class: 'tile-button tile-full' }, icon('expand'));
			full.addEventListener('click', () => this.toggleFullscreen(k));
		}
		const el = h(
			'figure',
			{ class: 'tile', 'data-kind': kind, 'data-member-id': self ? null : id, 'data-self': self ? 'true' : null },
			video,
			h('figcaption', { class: 'tile-bar' }, name, h('span', { class: 'tile-actions' }, pin, full)),
		);
		/** @type {Tile} */
		const tile = { key: k, id, kind, el, video, name, pin, full, visible: null, shownAt: null };
		this.tiles.set(k, tile);
		this.label(tile);
		el.classList.toggle('is-speaking', kind === 'camera' && this.speaking.has(id));
		this.arrange();
		this.watcher.watch(video, (visible, width, height) => {
			tile.visible = visible;
			if (visible) {
				this.play(tile);
			} else {
				video.pause();
			}
			if (self) {
				return;
			}
			if (visible) {
				tile.shownAt = null;
				this.tellView(tile, width, height);
			} else {
				this.onView(id, kind, { visible });
			}
		});
		if (!self) {
			this.byVideo.set(video, tile);
			this.resizer.observe(video, { box: 'device-pixel-content-box' });
		}
		return tile;
	}

	/**
	 * The tile's name, and the names of its buttons.
	 * @param {Tile} tile
	 */
	label(tile) {
		const self = tile.id === SELF;
		const who = self ? 'You' : this.nameOf(tile.id);
		const what = tile.kind === 'screen' ? (self ? 'your screen' : `${who}’s screen`) : self ? 'your camera' : `${who}’s camera`;
		const text = tile.kind === 'screen' ? `${who} · screen` : who;
		const muted = tile.kind === 'camera' && !this.audible.has(tile.id);
		tile.name.replaceChildren(muted ? icon('mic', { off: true }) : '', h('span', { class: self ? 'tile-name-text badge-self' : 'tile-name-text' }, text));
		tile.name.title = muted ? `${text} (microphone off)` : text;
		tile.el.setAttribute('aria-label', muted ? `${what}, microphone off` : what);
		tile.pin.setAttribute('aria-label', `Pin ${what}`);
		tile.pin.title = `Pin ${what}`;
		if (tile.full) {
			const on = document.fullscreenElement === tile.el;
			const label = on ? `Leave full screen` : `Show ${what} full screen`;
			tile.full.setAttribute('aria-label', label);
			tile.full.title = label;
		}
	}

	/**
	 * Puts the tiles in order: the pinned one first, then the screens, then
	 * the remote cameras, my own preview last; members in joining order.
	 * Moves only what is out of place (a move does not interrupt a playing
	 * video).
	 */
	arrange() {
		const group = (/** @type {Tile} */ t) => (t.key === this.pinned ? 0 : t.kind === 'screen' ? 1 : t.id === SELF ? 3 : 2);
		const order = [...this.tiles.values()].sort((a, b) => group(a) - group(b) || this.rankOf(a.id) - this.rankOf(b.id));
		order.forEach((t, i) => {
			if (this.container.children[i] !== t.el) {
				this.container.insertBefore(t.el, this.container.children[i] ?? null);
			}
		});
		this.container.dataset.count = String(order.length);
		this.container.classList.toggle('has-pinned', this.pinned !== null);
	}

	/** @param {string} k */
	togglePin(k) {
		const before = this.pinned;
		this.pinned = before === k ? null : k;
		for (const t of this.tiles.values()) {
			const on = t.key === this.pinned;
			t.el.classList.toggle('is-pinned', on);
			t.pin.setAttribute('aria-pressed', String(on));
		}
		this.arrange();
		const tile = this.tiles.get(k);
		// Keep the focus where it was, and the tile in view.
		tile?.pin.focus();
		if (tile && this.pinned === k) {
			tile.el.scrollIntoView({ block: 'nearest' });
		}
	}

	/** @param {string} k */
	toggleFullscreen(k) {
		const tile = this.tiles.get(k);
		if (!tile) {
			return;
		}
		if (document.fullscreenElement === tile.el) {
			document.exitFullscreen().catch(() => {});
		} else if (document.fullscreenEnabled) {
			tile.el.requestFullscreen().catch(() => {});
		} else {
			// iPhone Safari: only a video element goes full screen.
			/** @type {any} */ (tile.video).webkitEnterFullscreen?.();
		}
	}

	updateFullscreen() {
		for (const tile of this.tiles.values()) {
			if (tile.full) {
				const on = document.fullscreenElement === tile.el;
				if (tile.full.dataset.on !== String(on)) {
					tile.full.dataset.on = String(on);
					setIcon(tile.full, on ? 'shrink' : 'expand');
				}
				this.label(tile);
			}
		}
	}

	/**
	 * Tells the sender the size a shown remote video has now, unless it is
	 * within a tenth of the size told last (resizes come in bursts).
	 * @param {Tile} tile
	 * @param {number} width device pixels
	 * @param {number} height device pixels
	 */
	tellView(tile, width, height) {
		const last = tile.shownAt;
		if (width < 1 || height < 1 || (last && Math.abs(width - last.width) <= last.width / 10 && Math.abs(height - last.height) <= last.height / 10)) {
			return;
		}
		tile.shownAt = { width, height };
		this.onView(tile.id, tile.kind, { visible: true, width, height });
	}

	/** @param {Tile} tile */
	play(tile) {
		if (tile.video.paused && tile.visible !== false) {
			tile.video.play().catch(() => {});
		}
	}
}

/**
 * @param {string} id
 * @param {VideoKind} kind
 */
function key(id, kind) {
	return `${id}:${kind}`;
}

/** @param {HTMLVideoElement} video */
function canFullscreen(video) {
	return document.fullscreenEnabled || typeof /** @type {any} */ (video).webkitEnterFullscreen === 'function';
}
