// @ts-check
/**
 * @file Line icons for the call UI. Each is an empty, decorative
 * (aria-hidden) span drawn by app.css (a mask of the icon over the text's
 * colour): no markup, nothing to inject into. The control holding an icon
 * carries the name.
 */

/**
 * The icons app.css draws (".icon-<name>"); the microphone, camera and
 * screen also crossed out ("mic-off"…).
 * @typedef {'mic' | 'camera' | 'screen' | 'devices' | 'pin' | 'expand' | 'shrink' | 'volume' | 'volume-off' | 'send' | 'check' | 'sound'} IconName
 */

/** @type {ReadonlySet<IconName>} */
const CAN_BE_OFF = new Set(['mic', 'camera', 'screen']);

/**
 * @param {IconName} name
 * @param {boolean} off
 */
function className(name, off) {
	return `icon icon-${name}${off && CAN_BE_OFF.has(name) ? '-off' : ''}`;
}

/**
 * An icon. With off, the microphone, camera or screen is crossed out.
 * @param {IconName} name
 * @param {{ off?: boolean }} [options]
 * @returns {HTMLSpanElement}
 */
export function icon(name, { off = false } = {}) {
	const el = document.createElement('span');
	el.className = className(name, off);
	el.setAttribute('aria-hidden', 'true');
	return el;
}

/**
 * Changes the icon inside a control (its first), or adds one in front.
 * @param {Element} el
 * @param {IconName} name
 * @param {{ off?: boolean }} [options]
 */
export function setIcon(el, name, { off = false } = {}) {
	const current = el.querySelector('.icon');
	if (current) {
		current.className = className(name, off);
	} else {
		el.prepend(icon(name, { off }));
	}
}
