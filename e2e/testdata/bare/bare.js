// The bare WebRTC mesh of the browser benchmark (see index.html).
//
// Signalling goes through the test's trivial WebSocket relay at /bare/ws:
// on connecting, the page gets {type: "peers", peers: [ids already there]}
// and offers to each of them; a page that receives an offer from someone
// new answers it. Messages to a peer are {to, data}; they arrive as
// {from, data}. The newcomer always offers, so offers never cross.
//
// window.bare exposes the peer connections for the test's checks, which
// run outside the measured window.

const id = new URLSearchParams(location.search).get('id') || String(Math.random());
const state = document.getElementById('state');
const stream = await navigator.mediaDevices.getUserMedia({ audio: true });

/** @type {Map<string, {pc: RTCPeerConnection, queue: Promise<void>}>} */
const peers = new Map();
window.bare = { id, peers };

const ws = new WebSocket(`ws://${location.host}/bare/ws?id=${encodeURIComponent(id)}`);
const send = (to, data) => ws.send(JSON.stringify({ to, data }));

function peer(other) {
  let p = peers.get(other);
  if (p) return p;
  const pc = new RTCPeerConnection();
  for (const track of stream.getAudioTracks()) pc.addTrack(track, stream);
  pc.onicecandidate = (e) => {
    if (e.candidate && e.candidate.candidate) send(other, { candidate: e.candidate.toJSON() });
  };
  pc.ontrack = (e) => {
    const audio = document.createElement('audio');
    audio.autoplay = true;
    audio.srcObject = e.streams[0] || new MediaStream([e.track]);
    audio.dataset.peer = other;
    document.body.append(audio);
    audio.play().catch(() => {});
  };
  p = { pc, queue: Promise.resolve() };
  peers.set(other, p);
  return p;
}

async function handle(from, data) {
  const { pc } = peer(from);
  if (data.description) {
    await pc.setRemoteDescription(data.description);
    if (data.description.type === 'offer') {
      await pc.setLocalDescription();
      send(from, { description: pc.localDescription.toJSON() });
    }
  } else if (data.candidate) {
    await pc.addIceCandidate(data.candidate);
  }
}

ws.onmessage = (ev) => {
  const m = JSON.parse(ev.data);
  if (m.type === 'peers') {
    for (const other of m.peers) {
      const p = peer(other);
      p.queue = p.queue.then(async () => {
        await p.pc.setLocalDescription();
        send(other, { description: p.pc.localDescription.toJSON() });
      }).catch((err) => console.error('offer', err));
    }
    state.textContent = 'in';
    return;
  }
  // Signals of a peer are applied one at a time, in order.
  const p = peer(m.from);
  p.queue = p.queue.then(() => handle(m.from, m.data)).catch((err) => console.error('signal', err));
};
