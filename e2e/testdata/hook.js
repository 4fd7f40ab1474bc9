// Installed by the browser benchmark (e2e/browserbench_test.go) in every
// page of every participant, of every variant alike, before any script of
// the page runs. It only keeps a reference to each RTCPeerConnection made
// (for the checks the test makes outside the measured window) and, on the
// invitation page, times a join:
//
//   click    the click on #join-button (capture phase, before the page's
//            own handler)
//   packet   the first remote audio frame: a synchronization source
//            appears on an audio receiver (getSynchronizationSources, which
//            lists a source once a frame of it has been delivered to the
//            receiver's track; polled every 5 ms from the click on)
//   packetAll  the same for `expect` distinct peer connections (all peers
//            heard)
//   samples  the first decoded samples: getStats inbound-rtp audio
//            totalSamplesReceived > 0 (polled every 50 ms; Chromium caches
//            stats for a few tens of ms, so this one is coarse)
//   unmute   the first "unmute" of a remote audio track (may come before
//            the first packet in some browsers: a cross-check only)
//
// All in performance.now() milliseconds of the page (the client is a
// single-page app: joining does not reload it).
//
// It also keeps a short timeline of the signalling and of the peer
// connections (B.log, at most 300 entries, [ms, what]) so that a slow join
// can be explained.
(() => {
  if (window.__bench) return;
  const B = window.__bench = { pcs: [], expect: 3, click: 0, packet: 0, packetAll: 0, samples: 0, unmute: 0, done: false, log: [] };
  const note = (what) => { if (B.log.length < 300) B.log.push([Math.round(performance.now()), what]); };
  const describe = (m) => {
    const d = m && m.data;
    const what = d ? (d.description ? d.description.type : d.candidate ? 'candidate' : d.hello ? 'hello' : Object.keys(d).join('+')) : '';
    return (m && m.type || '?') + (what ? ':' + what : '') + (m && m.from ? ' from ' + m.from : '') + (m && m.to ? ' to ' + m.to : '') + (m && m.data && m.data.to ? ' to ' + m.data.to : '');
  };
  const NativeWS = window.WebSocket;
  window.WebSocket = class BenchWebSocket extends NativeWS {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (e) => { try { note('ws< ' + describe(JSON.parse(e.data))); } catch { /* not JSON */ } });
    }
    send(x) {
      try { note('ws> ' + describe(JSON.parse(x))); } catch { /* not JSON */ }
      return super.send(x);
    }
  };
  const Native = window.RTCPeerConnection;
  if (!Native) return;
  class BenchPeerConnection extends Native {
    constructor(...args) {
      super(...args);
      const n = B.pcs.push(this);
      note('pc' + n + ' new');
      this.addEventListener('connectionstatechange', () => note('pc' + n + ' ' + this.connectionState));
      this.addEventListener('signalingstatechange', () => note('pc' + n + ' ' + this.signalingState));
      this.addEventListener('track', (e) => {
        if (e.track.kind !== 'audio') return;
        const mark = () => { if (B.click && !B.unmute) B.unmute = performance.now(); };
        if (!e.track.muted) mark(); else e.track.addEventListener('unmute', mark, { once: true });
      });
    }
  }
  window.RTCPeerConnection = BenchPeerConnection;

  const open = () => B.pcs.filter((pc) => pc.connectionState !== 'closed');

  // Inbound audio of every open peer connection (outside the window only).
  B.inbound = async () => {
    const out = [];
    for (const pc of open()) {
      let packets = 0, samples = 0;
      (await pc.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp' && s.kind === 'audio') {
          packets += s.packetsReceived || 0;
          samples += s.totalSamplesReceived || 0;
        }
      });
      out.push({ state: pc.connectionState, packets, samples });
    }
    return out;
  };

  function heard(pc) {
    for (const r of pc.getReceivers()) {
      if (r.track && r.track.kind === 'audio' && r.getSynchronizationSources().length > 0) return true;
    }
    return false;
  }

  function watch() {
    const end = B.click + 30000;
    const fast = () => {
      const now = performance.now();
      const n = open().filter(heard).length;
      if (n > 0 && !B.packet) { B.packet = now; note('first audio'); }
      if (n >= B.expect && !B.packetAll) { B.packetAll = now; note('audio from all'); }
      if ((B.packetAll && B.samples) || now > end) { B.done = true; return; }
      setTimeout(fast, 5);
    };
    const slow = async () => {
      if (B.done) return;
      for (const pc of open()) {
        let samples = 0;
        try {
          (await pc.getStats()).forEach((s) => { if (s.type === 'inbound-rtp' && s.kind === 'audio') samples += s.totalSamplesReceived || 0; });
        } catch { /* closed meanwhile */ }
        if (samples > 0 && !B.samples) B.samples = performance.now();
      }
      if (!B.samples) setTimeout(slow, 50);
    };
    fast();
    slow();
  }

  document.addEventListener('click', (e) => {
    const t = e.target;
    if (B.click || !(t instanceof Element) || !t.closest('#join-button')) return;
    B.click = performance.now();
    note('click');
    watch();
  }, true);
})();
