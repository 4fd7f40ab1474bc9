// Join page, from an invitation link: the room's name, a username, and
// every refusal in words with a way forward. A browser that is already a
// member never gets here: it goes straight to the room (app.js).

import { h, replace } from './dom.js';
import { explain } from './errors.js';
import { dropInviteToken, lastName, saveIdentity } from './identity.js';
import { nameProblem } from './ui.js';

/**
 * @param {import('./app.js').PageContext} ctx
 * @param {string} roomId
 * @param {string} token
 * @returns {import('./app.js').Cleanup}
 */
export function renderJoin(ctx, roomId, token) {
  const { conn, main, navigate } = ctx;
  const life = new AbortController();
  const card = h('section', { class: 'card narrow', id: 'join', 'aria-labelledby': 'page-title' });
  replace(main, card);
  document.title = 'Invitation · lepeerchat';

  /** Checks the invitation, then asks for a username. */
  async function start() {
    card.dataset.state = 'checking';
    card.setAttribute('aria-busy', 'true');
    replace(
      card,
      h('h1', { id: 'page-title', tabindex: '-1' }, 'Invitation'),
      h('p', { class: 'muted', role: 'status' }, 'Checking your invitation…'),
    );
    try {
      const reply = await conn.request('invitation', { room: roomId, invite: token }, { retry: true, timeout: 20_000 });
      if (life.signal.aborted) return;
      askName(reply.room.name);
    } catch (err) {
      if (life.signal.aborted) return;
      refused(err, '');
    }
  }

  /** @param {string} roomName */
  function askName(roomName) {
    card.dataset.state = 'ask';
    card.removeAttribute('aria-busy');
    document.title = `Join ${roomName} · lepeerchat`;
    const input = h('input', {
      id: 'join-name',
      name: 'name',
      type: 'text',
      autocomplete: 'nickname',
      required: true,
      value: lastName(),
      'aria-describedby': 'join-hint join-error',
      enterkeyhint: 'go',
    });
    const error = h('p', { id: 'join-error', class: 'field-error', role: 'alert' });
    const button = h('button', { type: 'submit', class: 'primary', id: 'join-button' }, 'Join the room');
    const form = h(
      'form',
      { class: 'stack', novalidate: true },
      h('div', { class: 'field' }, h('label', { for: 'join-name' }, 'Your name'), input),
      h(
        'p',
        { id: 'join-hint', class: 'muted small' },
        'The others in the room see this name. No account needed: this browser remembers you, so next time you go straight in.',
      ),
      error,
      h('div', { class: 'actions' }, button),
    );
    replace(
      card,
      h('p', { class: 'eyebrow' }, 'You are invited to join'),
      h('h1', { id: 'page-title', class: 'join-title', tabindex: '-1' }, roomName),
      form,
    );
    input.focus();

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const problem = nameProblem(input.value, 'username');
      if (problem) {
        error.textContent = problem;
        input.setAttribute('aria-invalid', 'true');
        input.focus();
        return;
      }
      error.textContent = '';
      input.removeAttribute('aria-invalid');
      button.disabled = true;
      button.textContent = 'Joining…';
      try {
        const joined = await conn.request('join', { room: roomId, invite: token, name: input.value });
        if (life.signal.aborted) return;
        saveIdentity({
          room: joined.room.id,
          member: joined.self.id,
          secret: joined.self.secret ?? '',
          roomName: joined.room.name,
          myName: joined.self.name,
        });
        dropInviteToken(roomId);
        navigate(`/r/${roomId}`, { joined }, true);
      } catch (err) {
        if (life.signal.aborted) return;
        const e = explain(err);
        if (e.field === 'name') {
          error.textContent = e.text;
          input.setAttribute('aria-invalid', 'true');
          button.disabled = false;
          button.textContent = 'Join the room';
          input.focus();
          input.select();
        } else {
          refused(err, roomName);
        }
      }
    });
  }

  /**
   * Shows a refusal in words, with the ways forward.
   * @param {unknown} err
   * @param {string} roomName empty when not known
   */
  function refused(err, roomName) {
    const e = explain(err);
    const code = /** @type {{code?: string}} */ (err).code ?? '';
    card.dataset.state = 'refused';
    card.dataset.code = code;
    card.removeAttribute('aria-busy');
    if (e.newInvite || e.gone) dropInviteToken(roomId);
    const actions = h('div', { class: 'actions' });
    if (e.retry) {
      actions.append(h('button', { type: 'button', class: 'primary', onclick: () => start() }, 'Try again'));
    }
    actions.append(
      h('a', { href: '/', 'data-link': '', class: e.retry ? 'button secondary' : 'button primary' }, e.gone ? 'Create a room instead' : 'Go to the home page'),
    );
    replace(
      card,
      roomName ? h('p', { class: 'eyebrow' }, roomName) : null,
      h('h1', { id: 'page-title', tabindex: '-1' }, e.title),
      h('p', { id: 'refusal', role: 'alert' }, e.text),
      actions,
    );
    card.querySelector('h1')?.focus();
  }

  start();
  return () => life.abort();
}
