// Every refusal the client can meet, in words, with the way forward.

/**
 * @typedef {object} Explanation
 * @property {string} title what happened, in a few words
 * @property {string} text why, and what to do
 * @property {'name' | 'room'} [field] the form field at fault, if any
 * @property {boolean} [retry] trying the same thing again later may work
 * @property {boolean} [newInvite] a new invitation link is the way in
 * @property {boolean} [gone] the room (or my membership) no longer exists
 */

/**
 * @param {string} s
 * @returns {string}
 */
function sentence(s) {
  const t = s.trim();
  if (!t) return t;
  return t[0].toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? '' : '.');
}

/**
 * Explains an error from the server or the connection.
 * @param {unknown} err a ProtocolError, or anything thrown
 * @returns {Explanation}
 */
export function explain(err) {
  const e = /** @type {{code?: unknown, message?: unknown}} */ (err ?? {});
  const code = typeof e.code === 'string' ? e.code : '';
  const message = typeof e.message === 'string' ? e.message : '';
  switch (code) {
    case 'room_locked':
      return {
        title: 'This room is locked',
        text: 'The owner has locked the room, so new guests cannot enter for now, even with a valid invitation. Ask the owner to unlock it, then try again.',
        retry: true,
      };
    case 'invite_expired':
      return {
        title: 'This invitation has expired',
        text: 'Invitations last a limited time. Ask the person who invited you for a new link.',
        newInvite: true,
      };
    case 'invite_revoked':
      return {
        title: 'This invitation was withdrawn',
        text: 'The owner of the room revoked it. Ask them for a new link.',
        newInvite: true,
      };
    case 'invite_used':
      return {
        title: 'This invitation has already been used',
        text: 'It was meant for one person only. Ask the person who invited you for a new link.',
        newInvite: true,
      };
    case 'invite_invalid':
      return {
        title: 'This invitation link does not work',
        text: 'It may have been cut short when it was copied, or belong to another room. Check that you opened the whole link, or ask for a new one.',
        newInvite: true,
      };
    case 'name_taken':
      return {
        title: 'That username is taken',
        text: 'Someone in this room already uses that username, or one that looks the same (letters of another alphabet that look alike count as the same). Choose another one.',
        field: 'name',
      };
    case 'invalid_name':
      return {
        title: 'That name cannot be used',
        text: sentence(message || 'a name must have 1 to 40 visible characters'),
        field: 'name',
      };
    case 'room_not_found':
      return {
        title: 'This room no longer exists',
        text: 'A room is discarded some time after everyone has left it. You can create a new room from the home page.',
        gone: true,
      };
    case 'room_full':
      return {
        title: 'This room is full',
        text: 'It has reached its member limit. Ask the owner whether a place can be freed.',
        retry: true,
      };
    case 'bad_credentials':
      return {
        title: 'You are no longer a member of this room',
        text: 'You left it for good, were removed by its owner, or the room was discarded and created anew. Ask for a new invitation to come back.',
        gone: true,
        newInvite: true,
      };
    case 'not_owner':
      return { title: 'Only the owner can do this', text: 'This needs the room owner’s rights.' };
    case 'too_many_invites':
      return { title: 'Too many invitations', text: 'Revoke some outstanding invitations first.' };
    case 'invalid_ttl':
      return { title: 'Invalid duration', text: 'An invitation lasts between one minute and 30 days.' };
    case 'rate_limited':
      return { title: 'Too fast', text: 'Too many actions in a short time: wait a moment, then try again.', retry: true };
    case 'too_many_rooms':
      return { title: 'The server is full', text: 'This server holds as many rooms as its operator allows. Try again later, or ask its operator.', retry: true };
    case 'invalid_key':
      return { title: 'Your browser’s identity key was refused', text: 'Reload the page. If it happens again, this browser’s storage for this site may be damaged: clear it and ask for a new invitation.', retry: true };
    case 'unavailable':
      return { title: 'The server is busy', text: 'The server cannot reach its storage right now. Try again in a moment.', retry: true };
    case 'timeout':
      return { title: 'No answer', text: 'The server did not answer in time. Check your connection and try again.', retry: true };
    case 'disconnected':
      return { title: 'Connection lost', text: 'The connection to the server dropped before it answered. Try again once it is back.', retry: true };
    case 'closed':
      return { title: 'Not connected', text: sentence(message || 'the connection to the server is closed: reload the page'), retry: true };
    default:
      return {
        title: 'Something went wrong',
        text: sentence(message || 'the server could not handle this request'),
        retry: true,
      };
  }
}
