// Small UI helpers shared by the pages: a confirmation dialog, name checks,
// copying to the clipboard, and dates in words.

import { h } from './dom.js';

/** Longest name, in user-perceived characters (the server's rule). */
export const MAX_NAME_LENGTH = 40;

const segmenter = typeof Intl.Segmenter === 'function' ? new Intl.Segmenter(undefined, { granularity: 'grapheme' }) : null;

/**
 * Counts user-perceived characters (an emoji with modifiers is one).
 * @param {string} s
 * @returns {number}
 */
export function graphemes(s) {
  if (!segmenter) return [...s].length;
  let n = 0;
  for (const _ of segmenter.segment(s)) n++;
  return n;
}

/**
 * Checks a room name or username as the server will, so that most mistakes
 * are caught before a round trip. Returns the problem in words, or null.
 * @param {string} value
 * @param {string} what "room name" or "username"
 * @returns {string | null}
 */
export function nameProblem(value, what) {
  const v = value.trim().normalize('NFC');
  if (!v) return `Type a ${what}.`;
  // Control characters only; the server has the final word on the rest.
  if (/[\u0000-\u001f\u007f-\u009f]/.test(v)) return `A ${what} cannot contain control characters.`;
  const n = graphemes(v);
  if (n > MAX_NAME_LENGTH) return `A ${what} may have at most ${MAX_NAME_LENGTH} characters (this one has ${n}).`;
  return null;
}

/**
 * Asks for confirmation in a modal dialog. Resolves true when confirmed.
 * Escape and the cancel button resolve false.
 * @param {{title: string, text: string, confirm: string, cancel?: string, danger?: boolean}} opts
 * @returns {Promise<boolean>}
 */
export function confirmDialog(opts) {
  return new Promise((resolve) => {
    const titleId = `dlg-title-${Math.random().toString(36).slice(2)}`;
    const ok = h('button', { type: 'submit', value: 'ok', class: opts.danger ? 'danger' : 'primary' }, opts.confirm);
    const dialog = h(
      'dialog',
      { 'aria-labelledby': titleId },
      h(
        'form',
        { method: 'dialog' },
        h('h2', { id: titleId }, opts.title),
        h('p', null, opts.text),
        h(
          'div',
          { class: 'actions' },
          h('button', { type: 'submit', value: 'cancel', class: 'secondary' }, opts.cancel ?? 'Cancel'),
          ok,
        ),
      ),
    );
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue === 'ok');
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
    ok.focus();
  });
}

/**
 * Copies text to the clipboard. When the browser refuses (no permission,
 * not a secure context), selects the text in the given field instead so
 * that the person can copy it themselves. Resolves with what happened, in
 * words.
 * @param {string} text
 * @param {HTMLInputElement} [field] a field showing the text
 * @returns {Promise<{copied: boolean, message: string}>}
 */
export async function copyText(text, field) {
  try {
    await navigator.clipboard.writeText(text);
    return { copied: true, message: 'Link copied.' };
  } catch {
    if (field) {
      field.focus();
      field.select();
    }
    return { copied: false, message: 'The link is selected: copy it with Ctrl+C (⌘C on a Mac), or press and hold on a touch screen.' };
  }
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
const absolute = new Intl.DateTimeFormat(undefined, { weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });

/**
 * "in 23 hours", "in 6 days": how far a moment is from now.
 * @param {Date} when
 * @param {number} [now]
 * @returns {string}
 */
export function fromNow(when, now = Date.now()) {
  const s = (when.getTime() - now) / 1000;
  const abs = Math.abs(s);
  if (abs < 60) return relative.format(Math.round(s), 'second');
  if (abs < 3600) return relative.format(Math.round(s / 60), 'minute');
  if (abs < 48 * 3600) return relative.format(Math.round(s / 3600), 'hour');
  return relative.format(Math.round(s / 86400), 'day');
}

/**
 * A date and time, short: "Tue 25 Nov, 14:00".
 * @param {Date} when
 * @returns {string}
 */
export function formatDate(when) {
  return absolute.format(when);
}

/**
 * "1 person" / "3 people".
 * @param {number} n
 * @returns {string}
 */
export function people(n) {
  return n === 1 ? '1 person' : `${n} people`;
}
