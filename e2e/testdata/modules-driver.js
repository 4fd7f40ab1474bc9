// The "modules" variant of the browser benchmark (e2e/browserbench_test.go):
// lepeerchat's own call engine — web/static/js/mesh.js, media.js and
// chat.js, with their default settings — wired as a room page wires them,
// but with no page UI: a raw protocol client on the server's WebSocket, a
// Mesh, LocalMedia (microphone), RemoteAudio, a SpeakingDetector on the
// microphone and on every remote audio receiver, and a Chat. It sits
// between the bare page and the real room page, to tell the engine's cost
// from the UI's. Evaluated by the test on a plain page of the server;
// resolves to true once installed. The chat signs with the identity key of
// the test drivers (testKeysJS in e2e/chatsign_test.go, put in by the test
// where the marker below is).
(async () => {
  if (window.M) return true;
  /* testKeysJS */
  const keys = await testKeys();
  const [{ Mesh }, { Chat }, { LocalMedia, RemoteAudio, SpeakingDetector }] = await Promise.all([
    import('/js/mesh.js'), import('/js/chat.js'), import('/js/media.js')]);
  const M = window.M = { errors: [], speaking: 0 };
  const ws = new WebSocket(location.origin.replace(/^http/, 'ws') + '/ws', 'lepeerchat.v1');
  const pending = new Map();
  let nextId = 1;
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error('WebSocket failed')); });
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (typeof m.re === 'number' && pending.has(m.re)) {
      const p = pending.get(m.re);
      pending.delete(m.re);
      if (m.type === 'error') p.reject(new Error(m.error.code + ': ' + m.error.message)); else p.resolve(m);
      return;
    }
    const mesh = M.mesh;
    if (!mesh) return;
    if (m.type === 'signal') mesh.handleSignal(m.from, m.data || {});
    else if (m.type === 'member.joined' || m.type === 'member.connected') mesh.addPeer(m.member.id);
    else if (m.type === 'member.left') mesh.removePeer(m.member);
    else if (m.type === 'member.disconnected') mesh.peerOffline(m.member.id);
  };
  M.call = (type, fields) => new Promise((resolve, reject) => {
    const id = nextId++;
    pending.set(id, { resolve, reject });
    ws.send(JSON.stringify(Object.assign({ id, type }, fields || {})));
  });
  M.start = (reply) => {
    M.self = reply.self.id;
    M.room = reply.room.id;
    const mesh = M.mesh = new Mesh({ selfId: M.self, signaller: { send: (to, data) => M.call('signal', { to, data }).then(() => {}) } });
    const chat = M.chat = new Chat({ selfId: M.self, roomId: M.room, signer: keys.signer(M.self), transport: mesh });
    const audio = M.audio = new RemoteAudio();
    const media = M.media = new LocalMedia();
    const speaking = M.speakingDetector = new SpeakingDetector();
    speaking.addEventListener('speaking', () => { M.speaking++; });
    media.on('trackchange', (e) => {
      const { kind, track } = e.detail;
      mesh.setLocalTrack(kind, track).catch((err) => M.errors.push('setLocalTrack: ' + err));
      if (kind === 'mic') {
        if (track) speaking.addTrack('self', track); else speaking.remove('self');
      }
    });
    mesh.on('error', (e) => M.errors.push(e.detail.context + ': ' + e.detail.error));
    keys.attach(mesh, chat);
    mesh.on('track', (e) => {
      const { id, kind, stream, track, receiver } = e.detail;
      if (track.kind !== 'audio') return;
      audio.attach(id, kind, stream);
      if (kind === 'mic') speaking.addReceiver(id, receiver);
    });
    mesh.on('trackended', (e) => {
      audio.detach(e.detail.id, e.detail.kind);
      if (e.detail.kind === 'mic') speaking.remove(e.detail.id);
    });
    addEventListener('pagehide', () => mesh.close());
    for (const m of reply.room.members) if (m.online && m.id !== M.self) mesh.addPeer(m.id);
    return { room: M.room, self: M.self };
  };
  M.create = async (room, name) => M.start(await M.call('create', { room, name }));
  M.invite = async () => (await M.call('invite', {})).invite.token;
  M.join = async (room, invite, name) => M.start(await M.call('join', { room, invite, name }));
  M.micOn = async () => { await M.media.startMicrophone(); return true; };
  M.say = (text) => { M.chat.send(text); return true; };
  return true;
})()
