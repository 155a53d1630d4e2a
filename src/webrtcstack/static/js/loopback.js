// ?debug=loopback: the room server puts a pseudo client in the room, and this
// script plays it.  It registers a second signaling socket as
// "loopback_client_id", answers the page's offer with a second, local
// RTCPeerConnection and trades candidates, so the page calls itself through
// the real signaling and TURN path (the remote video is your own camera).
'use strict';

(function () {
  const params = window.loadingParams || {};
  if (!params.roomId) return;
  const LOOPBACK_ID = 'loopback_client_id';

  function start(call) {
    const ws = new WebSocket(params.wssUrl);
    let pc = null;
    const pending = [];
    const send = (message) => ws.send(JSON.stringify({ cmd: 'send', msg: JSON.stringify(message) }));

    function peer() {
      if (pc) return pc;
      pc = new RTCPeerConnection({
        iceServers: call.pcConfig.iceServers || [],
        iceTransportPolicy: call.pcConfig.iceTransports || 'all',
        bundlePolicy: 'max-bundle',
        rtcpMuxPolicy: 'require',
      });
      pc.onicecandidate = (event) => {
        const c = event.candidate;
        if (c && c.candidate) send({ type: 'candidate', label: c.sdpMLineIndex, id: c.sdpMid, candidate: c.candidate });
      };
      // Send back what arrives, so the page sees its own media as remote.
      pc.ontrack = (event) => {
        const sender = pc.getTransceivers().find((t) => t.receiver.track === event.track);
        if (sender) {
          sender.direction = 'sendrecv';
          sender.sender.replaceTrack(event.track);
        }
      };
      return pc;
    }

    ws.onopen = () => ws.send(JSON.stringify({ cmd: 'register', roomid: params.roomId, clientid: LOOPBACK_ID }));
    ws.onmessage = (event) => {
      const envelope = JSON.parse(event.data);
      if (envelope.error || !envelope.msg) return;
      const message = JSON.parse(envelope.msg);
      const p = peer();
      if (message.type === 'offer') {
        p.setRemoteDescription({ type: 'offer', sdp: message.sdp })
          .then(() => Promise.all(pending.splice(0).map((c) => p.addIceCandidate(c).catch(() => {}))))
          .then(() => {
            for (const t of p.getTransceivers()) {
              t.direction = 'sendrecv';
              if (t.receiver.track) t.sender.replaceTrack(t.receiver.track);
            }
            return p.createAnswer();
          })
          .then((answer) => p.setLocalDescription(answer))
          .then(() => send({ type: 'answer', sdp: p.localDescription.sdp }));
      } else if (message.type === 'candidate') {
        const init = { candidate: message.candidate, sdpMid: message.id, sdpMLineIndex: message.label };
        if (p.remoteDescription) p.addIceCandidate(init).catch(() => {});
        else pending.push(init);
      } else if (message.type === 'bye') {
        if (pc) pc.close();
        pc = null;
      }
    };
  }

  // Register only once the page has joined: the room server creates the
  // pseudo client at join, and only ids it issued may register.
  const wait = setInterval(() => {
    const call = window.webrtcstackCall;
    if (call && call.clientId) {
      clearInterval(wait);
      start(call);
    }
  }, 100);
})();
