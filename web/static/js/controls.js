// @ts-check
/**
 * @file The media controls of the room page: microphone, camera and screen
 * share (each on and off independently), the device pickers, what I share,
 * the "Enable sound" button when the browser blocks playback, and a status
 * line read out by screen readers.
 */

import { h } from './dom.js';
import { icon, setIcon } from './icons.js';

/** @typedef {import('./media.js').LocalMedia} LocalMedia */
/** @typedef {import('./media.js').RemoteAudio} RemoteAudio */
/** @typedef {import('./media.js').DeviceLists} DeviceLists */
/** @typedef {'mic' | 'camera' | 'screen'} Toggle */

/** @type {Record<Toggle, {long: string, short: string, icon: 'mic' | 'camera' | 'screen', thing: string}>} */
const TOGGLES = {
	mic: { long: 'Microphone', short: 'Mic', icon: 'mic', thing: 'microphone' },
	camera: { long: 'Camera', short: 'Camera', icon: 'camera', thing: 'camera' },
	screen: { long: 'Share screen', short: 'Screen', icon: 'screen', thing: 'screen share' },
};

export class MediaControls {
	/**
	 * @param {HTMLElement} container the empty #media-controls group
	 * @param {object} options
	 * @param {LocalMedia} options.local
	 * @param {RemoteAudio} options.remoteAudio
	 */
	constructor(container, { local, remoteAudio }) {
		this.container = container;
		this.local = local;
		this.remoteAudio = remoteAudio;
		this.supported = !!navigator.mediaDevices?.getUserMedia;
		this.canShare = typeof navigator.mediaDevices?.getDisplayMedia === 'function';
		/** @type {Set<Toggle>} starting now */
		this.busy = new Set();
		/** @type {Map<Toggle, string>} the state last drawn per button */
		this.drawn = new Map();
		/** The device chosen per kind ("" for the browser's default). */
		this.choice = { mic: '', camera: '', speaker: '' };

		/** @type {Record<Toggle, HTMLButtonElement>} */
		this.buttons = {
			mic: this.toggleButton('mic'),
			camera: this.toggleButton('camera'),
			screen: this.toggleButton('screen'),
		};
		this.buttons.screen.hidden = !this.canShare;

		this.devicesButton = h(
			'button',
			{ type: 'button', class: 'toggle secondary', id: 'devices-button', 'aria-expanded': 'false', 'aria-controls': 'devices-panel' },
			icon('devices'),
			h('span', null, 'Devices'),
		);
		this.devicesButton.addEventListener('click', () => this.toggleDevices());

		this.micSelect = h('select', { id: 'mic-select' });
		this.cameraSelect = h('select', { id: 'camera-select' });
		this.speakerSelect = h('select', { id: 'speaker-select' });
		this.canPickSpeaker = 'setSinkId' in HTMLMediaElement.prototype;
		this.micSelect.addEventListener('change', () => this.pick('mic', this.micSelect.value));
		this.cameraSelect.addEventListener('change', () => this.pick('camera', this.cameraSelect.value));
		this.speakerSelect.addEventListener('change', () => this.pickSpeaker(this.speakerSelect.value));
		this.devicesPanel = h(
			'div',
			{ id: 'devices-panel', class: 'devices-panel', hidden: true },
			h('div', { class: 'field' }, h('label', { for: 'mic-select' }, 'Microphone'), this.micSelect),
			h('div', { class: 'field' }, h('label', { for: 'camera-select' }, 'Camera'), this.cameraSelect),
			this.canPickSpeaker ? h('div', { class: 'field' }, h('label', { for: 'speaker-select' }, 'Sound output'), this.speakerSelect) : null,
			h('p', { class: 'muted small devices-note' }, 'Device names show once the browser has been allowed to use one.'),
		);

		this.sharing = h('p', { class: 'sharing-note', id: 'sharing-note', hidden: true });
		this.status = h('p', { class: 'media-status', id: 'media-status', role: 'status' });
		this.enableSound = h('button', { type: 'button', class: 'primary', id: 'enable-sound', hidden: true }, icon('sound'), 'Enable sound');
		this.enableSound.addEventListener('click', () => {
			this.enableSound.hidden = true;
			this.remoteAudio.resume();
		});

		container.append(
			h(
				'div',
				{ class: 'media-buttons' },
				this.buttons.mic,
				this.buttons.camera,
				this.buttons.screen,
				this.devicesButton,
			),
			this.enableSound,
			this.sharing,
			this.status,
			this.devicesPanel,
		);
		if (!this.supported) {
			for (const b of [this.buttons.mic, this.buttons.camera, this.buttons.screen, this.devicesButton]) {
				b.disabled = true;
			}
			this.say('This browser gives no access to a microphone or camera here: it needs a secure (https) address. The chat works without them.');
		}
		this.update();
	}

	/**
	 * @param {Toggle} kind
	 * @returns {HTMLButtonElement}
	 */
	toggleButton(kind) {
		const t = TOGGLES[kind];
		const b = h(
			'button',
			// The visible label is shorter on a phone: the name stays the same.
			{ type: 'button', class: 'toggle', id: `${kind}-button`, 'aria-pressed': 'false', 'aria-label': t.long, title: t.long },
			icon(t.icon, { off: true }),
			h('span', { class: 'label-long' }, t.long),
			h('span', { class: 'label-short' }, t.short),
		);
		b.addEventListener('click', () => this.toggle(kind));
		return b;
	}

	/**
	 * Turns a kind on or off.
	 * @param {Toggle} kind
	 */
	async toggle(kind) {
		if (this.busy.has(kind)) {
			return;
		}
		if (this.local.track(kind)) {
			this.local.stop(kind);
			this.say('');
			return;
		}
		this.busy.add(kind);
		this.update();
		this.say('');
		try {
			if (kind === 'mic') {
				await this.local.startMicrophone(this.choice.mic);
			} else if (kind === 'camera') {
				await this.local.startCamera(this.choice.camera);
			} else {
				await this.local.startScreen({ audio: true });
			}
		} catch (err) {
			this.say(problem(kind, err));
		} finally {
			this.busy.delete(kind);
			this.update();
		}
		if (kind !== 'screen') {
			this.refreshDevices();
		}
	}

	/**
	 * A device was chosen: switch to it now if the kind is on.
	 * @param {'mic' | 'camera'} kind
	 * @param {string} deviceId
	 */
	async pick(kind, deviceId) {
		this.choice[kind] = deviceId;
		if (!this.local.track(kind) || this.busy.has(kind)) {
			return;
		}
		this.busy.add(kind);
		this.update();
		try {
			if (kind === 'mic') {
				await this.local.startMicrophone(deviceId);
			} else {
				await this.local.startCamera(deviceId);
			}
			this.say('');
		} catch (err) {
			this.say(problem(kind, err));
		} finally {
			this.busy.delete(kind);
			this.update();
		}
	}

	/** @param {string} deviceId */
	async pickSpeaker(deviceId) {
		this.choice.speaker = deviceId;
		try {
			await this.remoteAudio.setOutputDevice(deviceId);
			this.say('');
		} catch {
			this.say('That sound output could not be used.');
		}
	}

	toggleDevices() {
		const open = this.devicesPanel.hidden;
		this.devicesPanel.hidden = !open;
		this.devicesButton.setAttribute('aria-expanded', String(open));
		this.devicesButton.classList.toggle('is-open', open);
		if (open) {
			this.refreshDevices();
		}
	}

	/** Reads the device lists again (labels appear once access is granted). */
	async refreshDevices() {
		if (!this.supported) {
			return;
		}
		try {
			this.showDevices(await this.local.devices());
		} catch {
			// no device access at all
		}
	}

	/** @param {DeviceLists} lists */
	showDevices(lists) {
		fill(this.micSelect, lists.microphones, this.choice.mic, 'Microphone');
		fill(this.cameraSelect, lists.cameras, this.choice.camera, 'Camera');
		fill(this.speakerSelect, lists.speakers, this.choice.speaker, 'Output');
	}

	/**
	 * Says something in the status line (read out politely), or clears it.
	 * @param {string} text
	 */
	say(text) {
		if (this.status.textContent !== text) {
			this.status.textContent = text;
		}
	}

	/** The browser refused to play remote sound until a click. */
	soundBlocked() {
		this.enableSound.hidden = false;
	}

	/** Draws the buttons and the "sharing" note from the local tracks. */
	update() {
		for (const kind of /** @type {Toggle[]} */ (['mic', 'camera', 'screen'])) {
			const on = !!this.local.track(kind);
			const busy = this.busy.has(kind);
			const state = `${on}/${busy}`;
			if (this.drawn.get(kind) === state) {
				continue;
			}
			this.drawn.set(kind, state);
			const b = this.buttons[kind];
			b.setAttribute('aria-pressed', String(on));
			b.classList.toggle('is-on', on);
			if (busy) {
				b.setAttribute('aria-busy', 'true');
			} else {
				b.removeAttribute('aria-busy');
			}
			b.disabled = busy || !this.supported;
			setIcon(b, TOGGLES[kind].icon, { off: !on });
		}
		const screen = !!this.local.track('screen');
		const screenAudio = !!this.local.track('screen-audio');
		this.sharing.hidden = !screen;
		this.sharing.textContent = screen ? (screenAudio ? 'You are sharing your screen and its sound with everyone here.' : 'You are sharing your screen with everyone here.') : '';
	}
}

/**
 * Fills a device picker, keeping the choice.
 * @param {HTMLSelectElement} select
 * @param {import('./media.js').Device[]} devices
 * @param {string} chosen
 * @param {string} noun
 */
function fill(select, devices, chosen, noun) {
	// Chromium lists the default device twice: as "default" ("Default -
	// name") and under its own id.
	const def = devices.find((d) => d.deviceId === 'default');
	const options = [h('option', { value: '' }, def?.label ? def.label.replace(/^Default\s*-\s*/, 'Default: ') : 'Default')];
	devices.forEach((d, i) => {
		if (d.deviceId !== 'default') {
			options.push(h('option', { value: d.deviceId }, d.label || `${noun} ${i + 1}`));
		}
	});
	const before = [...select.options].map((o) => o.value + '\n' + o.text).join('\n');
	const after = options.map((o) => o.value + '\n' + o.text).join('\n');
	if (before !== after) {
		select.replaceChildren(...options);
	}
	select.value = devices.some((d) => d.deviceId === chosen) ? chosen : '';
}

/**
 * Says in words why a device could not start.
 * @param {Toggle} kind
 * @param {unknown} err
 * @returns {string}
 */
function problem(kind, err) {
	const name = err instanceof DOMException || err instanceof Error ? err.name : '';
	const thing = TOGGLES[kind].thing;
	if (kind === 'screen' && (name === 'NotAllowedError' || name === 'AbortError')) {
		return 'Screen sharing was cancelled.';
	}
	switch (name) {
	case 'NotAllowedError':
	case 'SecurityError':
		return `The browser was not allowed to use the ${thing}. Allow it in the site settings (next to the address), then try again.`;
	case 'NotFoundError':
	case 'OverconstrainedError':
		return `No ${thing} was found. Plug one in, or choose another under Devices.`;
	case 'NotReadableError':
		return `The ${thing} could not start: another application may be using it.`;
	default:
		return `The ${thing} could not start${err instanceof Error && err.message ? `: ${err.message}` : '.'}`;
	}
}
