// @ts-check
/**
 * @file The chat panel of the room page: the messages (text rendered as
 * text and safe links only, names as text), "seen" marks on my messages,
 * and the composer (Enter sends, Shift+Enter starts a new line, a visible
 * length counter that refuses an over-long message).
 *
 * Names are text a member chose, so what the view says of its own is never
 * plain text a name could reproduce: my messages and members whose name is
 * unknown are marked by a badge element, and a message handed on by
 * someone other than its author says so.
 *
 * Messages are drawn in batches: those that arrive before the next frame
 * are inserted together, with one read of the scroll position and one
 * scroll, so a flood costs one layout, not one per message.
 */

import { h } from './dom.js';
import { icon } from './icons.js';
import { MAX_TEXT, cleanText, compareMessages, messageKey, renderText, textLength } from './chat.js';
import { isShowableTime } from './wire.js';

/** @typedef {import('./chat.js').Chat} Chat */
/** @typedef {import('./chat.js').ChatMessage} ChatMessage */

/** Messages of one author closer than this in a row share one heading. */
const GROUP_MS = 5 * 60_000;
/** How close to the bottom the log must be to follow new messages. */
const FOLLOW_PX = 48;

const clock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const full = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

export class ChatView {
	/**
	 * @param {HTMLElement} container the empty #chat section
	 * @param {object} options
	 * @param {Chat} options.chat
	 * @param {(id: string) => string} options.nameOf a member's name ("" when unknown)
	 * @param {() => number} options.othersOnline how many others are in the room now
	 */
	constructor(container, { chat, nameOf, othersOnline }) {
		this.container = container;
		this.chat = chat;
		this.nameOf = nameOf;
		this.othersOnline = othersOnline;
		/** @type {Map<string, HTMLLIElement>} by messageKey */
		this.items = new Map();
		/** @type {Map<string, ChatMessage>} messages to draw at the next frame, by messageKey */
		this.pending = new Map();
		/** @type {number | undefined} */
		this.frame = undefined;

		this.log = h('ol', { class: 'chat-log', id: 'chat-log', role: 'log', 'aria-live': 'polite', 'aria-labelledby': 'chat-title', tabindex: '0' });
		this.empty = h(
			'p',
			{ class: 'chat-empty muted', id: 'chat-empty' },
			'No messages yet. They go from browser to browser: the server never sees them.',
		);
		this.input = h('textarea', {
			id: 'chat-input',
			name: 'message',
			rows: '2',
			placeholder: 'Write a message…',
			autocomplete: 'off',
			'aria-describedby': 'chat-counter chat-hint',
		});
		this.counter = h('span', { class: 'chat-counter', id: 'chat-counter' });
		this.error = h('p', { class: 'field-error', id: 'chat-error', role: 'alert' });
		this.send = h('button', { type: 'submit', class: 'primary small chat-send', id: 'chat-send' }, icon('send'), 'Send');
		this.form = h(
			'form',
			{ class: 'composer', id: 'chat-form' },
			h('label', { for: 'chat-input', class: 'visually-hidden' }, 'Message'),
			this.input,
			h(
				'div',
				{ class: 'composer-foot' },
				h('span', { class: 'chat-hint muted', id: 'chat-hint' }, 'Shift+Enter: new line'),
				this.counter,
				this.send,
			),
			this.error,
		);
		container.classList.add('panel', 'chat-panel');
		container.removeAttribute('aria-label');
		container.setAttribute('aria-labelledby', 'chat-title');
		container.append(h('h2', { id: 'chat-title' }, 'Chat'), this.empty, this.log, this.form);

		this.form.addEventListener('submit', (ev) => {
			ev.preventDefault();
			this.submit();
		});
		this.input.addEventListener('keydown', (ev) => {
			if (ev.key === 'Enter' && !ev.shiftKey && !ev.altKey && !ev.ctrlKey && !ev.metaKey && !ev.isComposing) {
				ev.preventDefault();
				this.submit();
			}
		});
		this.input.addEventListener('input', () => this.count());

		chat.on('message', (ev) => this.queue(ev.detail.message));
		chat.on('seen', (ev) => this.mark(ev.detail.message));
		chat.on('updated', (ev) => {
			if (!ev.detail.message.relayedBy) {
				this.items.get(messageKey(ev.detail.message))?.querySelector('.msg-relayed')?.remove();
			}
		});
		chat.on('failed', (ev) => {
			const e = ev.detail.error;
			this.error.textContent = e instanceof Error ? `Not sent: ${e.message}.` : 'Not sent: it could not be signed.';
		});
		chat.on('removed', (ev) => {
			for (const key of ev.detail.keys) {
				this.pending.delete(key);
				const li = this.items.get(key);
				const next = li?.nextElementSibling;
				li?.remove();
				this.items.delete(key);
				if (next instanceof HTMLLIElement) {
					this.group(next);
				}
			}
		});
		for (const m of chat.messages) {
			this.queue(m);
		}
		this.count();
	}

	/** Sends what is typed, if it may be sent. */
	submit() {
		const text = cleanText(this.input.value);
		if (text.trim() === '') {
			this.input.focus();
			return;
		}
		const n = textLength(text);
		if (n > MAX_TEXT) {
			const over = n - MAX_TEXT;
			this.error.textContent = `This message is ${over} character${over === 1 ? '' : 's'} too long: a message may have at most ${MAX_TEXT}.`;
			this.input.focus();
			return;
		}
		try {
			this.chat.send(text);
		} catch (err) {
			this.error.textContent = err instanceof Error ? `Not sent: ${err.message}.` : 'Not sent.';
			return;
		}
		this.input.value = '';
		this.count();
		this.input.focus();
	}

	/** Shows the length against the limit. */
	count() {
		const n = textLength(this.input.value);
		const over = n > MAX_TEXT;
		this.counter.textContent = `${n} / ${MAX_TEXT}`;
		this.counter.classList.toggle('is-over', over);
		this.input.setAttribute('aria-invalid', String(over));
		if (!over && this.error.textContent) {
			this.error.textContent = '';
		}
	}

	/** Updates the authors' names (a member's name became known). */
	renameAll() {
		for (const [key, li] of this.items) {
			const m = this.chat.byKey.get(key);
			const author = li.querySelector('.msg-author');
			if (m && author) {
				author.replaceChildren(this.author(m));
			}
			const relayed = li.querySelector('.msg-relayed');
			if (m && relayed) {
				relayed.replaceChildren(...this.relayed(m));
			}
			if (m?.own) {
				this.mark(m);
			}
		}
	}

	/**
	 * Draws a message at the next frame, with the others that come before it.
	 * @param {ChatMessage} m
	 */
	queue(m) {
		const key = messageKey(m);
		if (this.items.has(key)) {
			return;
		}
		this.pending.set(key, m);
		this.frame ??= requestAnimationFrame(() => this.flush());
	}

	/**
	 * Inserts the messages queued, each where the chat has it: one read of
	 * the scroll position before, one scroll after.
	 */
	flush() {
		this.frame = undefined;
		const batch = [...this.pending.values()].filter((m) => this.chat.byKey.get(messageKey(m)) === m).sort(compareMessages);
		this.pending.clear();
		if (batch.length === 0) {
			return;
		}
		const log = this.log;
		const follow = batch.some((m) => m.own) || log.scrollHeight - log.scrollTop - log.clientHeight < FOLLOW_PX;
		const list = this.chat.messages;
		// Last first: the next message of each is then drawn already.
		for (let i = batch.length - 1; i >= 0; i--) {
			const m = batch[i];
			const li = this.item(m);
			const at = list.indexOf(m);
			const next = at >= 0 && at + 1 < list.length ? this.items.get(messageKey(list[at + 1])) : undefined;
			log.insertBefore(li, next ?? null);
		}
		for (const m of batch) {
			const li = /** @type {HTMLLIElement} */ (this.items.get(messageKey(m)));
			this.group(li);
			if (li.nextElementSibling instanceof HTMLLIElement) {
				this.group(li.nextElementSibling);
			}
			if (m.own) {
				this.mark(m);
			}
		}
		this.empty.hidden = true;
		if (follow) {
			log.scrollTop = log.scrollHeight;
		}
	}

	/**
	 * The element of a message.
	 * @param {ChatMessage} m
	 * @returns {HTMLLIElement}
	 */
	item(m) {
		const when = m.time > 0 && isShowableTime(m.time) ? new Date(m.time) : null;
		const text = h('div', { class: 'msg-text' });
		text.append(renderText(m.text));
		const li = h(
			'li',
			{ class: 'msg', 'data-id': m.id, 'data-key': messageKey(m), 'data-own': String(m.own), 'data-author': m.author },
			h(
				'p',
				{ class: 'msg-head' },
				h('span', { class: 'msg-author' }, this.author(m)),
				when ? h('time', { datetime: when.toISOString(), title: full.format(when) }, clock.format(when)) : null,
				m.relayedBy ? h('span', { class: 'msg-relayed' }, this.relayed(m)) : null,
			),
			text,
			m.own ? h('p', { class: 'msg-seen' }) : null,
		);
		this.items.set(messageKey(m), li);
		return li;
	}

	/**
	 * The "seen" mark of one of my messages.
	 * @param {ChatMessage} m
	 */
	mark(m) {
		const el = /** @type {HTMLElement | null | undefined} */ (this.items.get(messageKey(m))?.querySelector('.msg-seen'));
		if (!el) {
			return;
		}
		const seen = [...m.seenBy];
		const everyone = seen.length > 2 && seen.length >= this.othersOnline();
		// Names as text, the view's own words ("everyone") as a badge.
		const key = JSON.stringify(everyone || seen.map((id) => this.nameOf(id)));
		if (el.dataset.seen === key) {
			return;
		}
		el.dataset.seen = key;
		const who = everyone ? [h('span', { class: 'badge badge-everyone' }, 'everyone')] : list(seen.map((id) => this.member(id)));
		el.replaceChildren(...(seen.length === 0 ? ['Not seen yet'] : [icon('check'), 'Seen by ', ...who]));
		el.classList.toggle('is-seen', seen.length > 0);
	}

	/**
	 * Who wrote a message: a name as text, or a badge that no name can be.
	 * @param {ChatMessage} m
	 * @returns {Node | string}
	 */
	author(m) {
		return m.own ? h('span', { class: 'badge badge-self' }, 'You') : this.member(m.author);
	}

	/**
	 * "relayed by" and who handed the message on.
	 * @param {ChatMessage} m
	 * @returns {Array<Node | string>}
	 */
	relayed(m) {
		return ['relayed by ', this.member(m.relayedBy)];
	}

	/**
	 * A member's name as text, or a badge when it is unknown.
	 * @param {string} id
	 * @returns {Node | string}
	 */
	member(id) {
		return this.nameOf(id) || h('span', { class: 'badge badge-former' }, 'former member');
	}

	/**
	 * Hides the heading of a message that follows one of the same author
	 * shortly before.
	 * @param {HTMLLIElement} li
	 */
	group(li) {
		const prev = li.previousElementSibling;
		const a = this.chat.byKey.get(li.dataset.key ?? '');
		const b = prev instanceof HTMLLIElement ? this.chat.byKey.get(prev.dataset.key ?? '') : undefined;
		const continued = !!a && !!b && a.author === b.author && Math.abs(a.time - b.time) < GROUP_MS;
		li.classList.toggle('is-continued', continued);
	}

	close() {
		if (this.frame !== undefined) {
			cancelAnimationFrame(this.frame);
		}
		this.container.replaceChildren();
	}
}

/**
 * "Ann", "Ann and Bob", "Ann, Bob and Cy", of names as text or badges.
 * @param {Array<Node | string>} names
 * @returns {Array<Node | string>}
 */
function list(names) {
	return names.flatMap((n, i) => (i === 0 ? [n] : [i === names.length - 1 ? ' and ' : ', ', n]));
}
