// webrtcstack call page: apprtc's call flow over our room server and
// collider-compatible signaling, with the standard WebRTC API only.
//
//   join (POST /join/<room>)  +  WebSocket (register)  +  ICE servers (POST)
//   initiator: offer, candidates -> POST /message/<room>/<client>
//   the other: answer, candidates -> WebSocket {"cmd":"send","msg":...}
//   hang up: POST /leave, send {"type":"bye"}, close the socket, DELETE
//   signaling dropped: reconnect with back-off and register again; if the
//   room no longer knows us, or the server stays away, say so and offer Rejoin
'use strict';

(function () {
  const params = window.loadingParams || {};
  const $ = (id) => document.getElementById(id);
  const ROOM_RE = /^[A-Za-z0-9_-]{5,64}$/;

  function showMessage(text, kind) {
    const li = document.createElement('li');
    li.textContent = text;
    li.className = kind || 'info';
    $('messages').appendChild(li);
  }

  function setStatus(text) {
    $('status').textContent = text;
  }

  function setControls(enabled) {
    for (const id of ['mute-audio', 'mute-video', 'hangup']) $(id).disabled = !enabled;
  }

  // One peer connection as both page kinds make it: apprtc's pc_config, our media (or receive-only),
  // remote tracks into ``remoteStream``, and candidates handed to ``send`` as apprtc sends them
  // (never TCP ones, and with it=relay only relay ones); ``gathered`` is told of any candidate at all.
  function openPeerConnection(cfg, localStream, remoteStream, gathered, send) {
    const pc = new RTCPeerConnection({
      iceServers: cfg.iceServers || [],
      iceTransportPolicy: cfg.iceTransportPolicy || cfg.iceTransports || 'all',
      bundlePolicy: cfg.bundlePolicy || 'max-bundle',
      rtcpMuxPolicy: cfg.rtcpMuxPolicy || 'require',
    });
    if (localStream) {
      for (const track of localStream.getTracks()) pc.addTrack(track, localStream);
    } else {
      pc.addTransceiver('audio', { direction: 'recvonly' });
      pc.addTransceiver('video', { direction: 'recvonly' });
    }
    pc.ontrack = (event) => { if (!remoteStream.getTracks().includes(event.track)) remoteStream.addTrack(event.track); };
    const relayOnly = pc.getConfiguration().iceTransportPolicy === 'relay';
    pc.onicecandidate = (event) => {
      const c = event.candidate;
      if (!c || !c.candidate) return;
      gathered();
      if (/ tcp /i.test(c.candidate)) return;
      if (relayOnly && c.candidate.indexOf(' typ relay') === -1) return;
      send({ type: 'candidate', label: c.sdpMLineIndex, id: c.sdpMid, candidate: c.candidate });
    };
    return pc;
  }

  // ICE that fails, or stays disconnected for a few seconds (a network change, a TURN relay gone), is
  // restarted by the side that offers (the other answers the new offer): new candidates, a new relay.
  const ICE_DISCONNECTED_GRACE_MS = 3000;
  const MAX_ICE_RESTARTS = 5;

  function watchIce(pc, isOfferer, restart, counts) {
    let timer = null;
    const kick = () => {
      timer = null;
      const state = pc.iceConnectionState;
      if (pc.signalingState === 'closed' || !isOfferer()) return;
      if (state !== 'failed' && state !== 'disconnected') return;
      if (pc.signalingState !== 'stable' || counts.iceFailRestarts >= MAX_ICE_RESTARTS) return;
      counts.iceFailRestarts = (counts.iceFailRestarts || 0) + 1;
      counts.iceFailRestartsTotal = (counts.iceFailRestartsTotal || 0) + 1;
      restart();
    };
    pc.addEventListener('iceconnectionstatechange', () => {
      const state = pc.iceConnectionState;
      if (state === 'failed') { clearTimeout(timer); kick(); }
      else if (state === 'disconnected') { if (!timer) timer = setTimeout(kick, ICE_DISCONNECTED_GRACE_MS); }
      else if (state === 'connected' || state === 'completed') { clearTimeout(timer); timer = null; counts.iceFailRestarts = 0; }
    });
  }

  // Waits between signaling reconnection attempts (ms); then the page gives up and offers Rejoin.
  const RECONNECT_DELAYS = [250, 1000, 2000, 4000, 8000, 15000];

  function randomRoom() {
    const digits = new Uint32Array(9);
    crypto.getRandomValues(digits);
    return Array.from(digits, (d) => String(d % 10)).join('');
  }

  if (params.headerMessage) {
    $('header-message').textContent = params.headerMessage;
    $('header-message').hidden = false;
  }

  // ---------------------------------------------------------------- landing
  if (!params.roomId) {
    $('landing').hidden = false;
    const input = $('room-name');
    input.value = randomRoom();
    const go = (name) => { window.location.href = '/r/' + encodeURIComponent(name) + window.location.search; };
    $('room-form').addEventListener('submit', (e) => {
      e.preventDefault();
      if (ROOM_RE.test(input.value)) go(input.value);
    });
    $('random-room').addEventListener('click', () => go(randomRoom()));
    return;
  }

  // ------------------------------------------------------------------- call
  function postJson(url, body) {
    return fetch(url, { method: 'POST', body: body === undefined ? '' : body, cache: 'no-store' })
      .then((r) => {
        if (!r.ok) throw new Error(url + ': HTTP ' + r.status);
        return r.json();
      });
  }

  // apprtc's ?tt= filter: keep URLs of that transport, add it where none is given.
  function filterTransports(servers, transport) {
    if (!transport) return servers;
    const out = [];
    for (const server of servers) {
      const urls = [].concat(server.urls || []);
      const kept = [];
      for (const url of urls) {
        if (url.indexOf('transport=') === -1) kept.push(url + '?transport=' + transport);
        else if (url.indexOf('transport=' + transport) !== -1) kept.push(url);
      }
      if (kept.length) out.push(Object.assign({}, server, { urls: kept }));
    }
    return out;
  }

  class Call {
    constructor(p) {
      this.p = p;
      this.roomId = p.roomId;
      this.pcConfig = Object.assign({}, p.peerConnectionConfig || {});
      this.clientId = null;
      this.isInitiator = false;
      this.ws = null;
      this.registered = false;
      this.pc = null;
      this.localStream = null;
      this.remoteStream = null;
      this.inbox = [];          // messages waiting for the peer connection
      this.pendingCandidates = [];
      this.hungUp = false;
      this.mediaReady = null;
      this.iceReady = null;
      this.counts = { sent: 0, received: 0, candidatesSent: 0, candidatesReceived: 0, iceRestarts: 0,
                      reconnects: 0, iceFailRestarts: 0, iceFailRestartsTotal: 0 };  // for tests
      this.gathered = false;
      this.reconnecting = false;
      this.statsTimer = null;
      this.lastStats = null;
    }

    start() {
      $('call').hidden = false;
      $('room-link').value = this.p.roomLink || window.location.href;
      for (const text of this.p.warningMessages || []) showMessage(text, 'warning');
      if ((this.p.errorMessages || []).length) {
        for (const text of this.p.errorMessages) showMessage(text, 'error');
        setStatus('Cannot start the call.');
        return;
      }
      this.mediaReady = this.getMedia();
      this.iceReady = this.getIceServers();
      if (this.p.bypassJoinConfirmation) {
        this.join();
      } else {
        setStatus('Ready to join?');
        $('confirm-join').hidden = false;
        $('join-button').addEventListener('click', () => {
          $('confirm-join').hidden = true;
          this.join();
        }, { once: true });
      }
    }

    getMedia() {
      setStatus('Asking for camera and microphone…');
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        showMessage('This page needs https (or http://localhost) to use the camera.', 'error');
        return Promise.resolve(null);
      }
      const constraints = this.p.mediaConstraints || { audio: true, video: true };
      return navigator.mediaDevices.getUserMedia(constraints).then((stream) => {
        this.localStream = stream;
        $('local-video').srcObject = stream;
        return stream;
      }).catch((err) => {
        const denied = err && (err.name === 'NotAllowedError' || err.name === 'SecurityError');
        showMessage(denied
          ? 'Camera and microphone access was denied. Allow it in the browser and reload to send video; you can still see and hear the other side.'
          : 'Could not open camera or microphone: ' + (err && (err.message || err.name)), 'error');
        return null;
      });
    }

    getIceServers() {
      const url = this.p.iceServerRequestUrl;
      if (!url || (this.pcConfig.iceServers || []).length) return Promise.resolve();
      return postJson(url).then((answer) => {
        const servers = filterTransports(answer.iceServers || [], this.p.iceServerTransports);
        this.pcConfig.iceServers = (this.pcConfig.iceServers || []).concat(servers);
      }).catch((err) => {
        showMessage('No TURN server; the call may not connect across networks (' + err.message + ').', 'warning');
      });
    }

    join() {
      setStatus('Joining the room…');
      const socketOpen = this.openSocket();
      const joined = postJson('/join/' + encodeURIComponent(this.roomId) + window.location.search).then((answer) => {
        if (answer.result === 'FULL') {
          window.location.href = '/r/' + encodeURIComponent(this.roomId) + window.location.search;
          throw new Error('room full');
        }
        if (answer.result !== 'SUCCESS') throw new Error('join failed: ' + answer.result + (answer.error ? ' (' + answer.error + ')' : ''));
        this.clientId = answer.params.client_id;
        this.isInitiator = answer.params.is_initiator === 'true';
        for (const text of answer.params.messages || []) {
          const message = JSON.parse(text);
          this.counts.received += 1;
          if (message.type === 'candidate') this.counts.candidatesReceived += 1;
          this.inbox.push(message);
        }
      });
      Promise.all([joined, socketOpen]).then(() => {
        this.ws.send(JSON.stringify({ cmd: 'register', roomid: this.roomId, clientid: this.clientId }));
        this.registered = true;
        setControls(true);
        setStatus(this.isInitiator ? 'Waiting for someone to join…' : 'Connecting…');
        return Promise.all([this.mediaReady, this.iceReady]);
      }).then(() => {
        if (!this.hungUp) this.startPeerConnection();
      }).catch((err) => {
        if (err.message !== 'room full') {
          setStatus('Could not join.');
          showMessage(err.message, 'error');
        }
      });
    }

    openSocket() {
      return new Promise((resolve, reject) => {
        const ws = new WebSocket(this.p.wssUrl);
        this.ws = ws;
        ws.onopen = () => resolve();
        ws.onerror = () => reject(new Error('cannot reach the signaling server'));
        ws.onclose = () => {
          // One chain of attempts at a time: a socket that fails while reconnecting is that chain's business.
          if (this.ws === ws && !this.hungUp && this.registered && !this.reconnecting) this.reconnect(0);
        };
        ws.onmessage = (event) => {
          let envelope;
          try { envelope = JSON.parse(event.data); } catch (e) { return; }
          this.onEnvelope(envelope);
        };
      });
    }

    onEnvelope(envelope) {
          if (envelope.error) {
            if (this.reconnecting) {
              // The room forgot us while we were away (the grace period ran out).
              this.giveUp('The room no longer has your place (' + envelope.error + ').');
              return;
            }
            showMessage('Signaling: ' + envelope.error, 'error');
            return;
          }
          if (envelope.msg) this.receive(JSON.parse(envelope.msg));
    }

    // The signaling socket dropped (a network change, a server restart): open
    // a new one and register the same client again, waiting longer each time.
    reconnect(attempt) {
      if (this.hungUp) return;
      if (attempt >= RECONNECT_DELAYS.length) {
        this.giveUp('Cannot reach the server.');
        return;
      }
      this.reconnecting = true;
      setStatus('Signaling connection lost; reconnecting…');
      if (attempt === 0) showMessage('Signaling connection lost; reconnecting…', 'warning');
      setTimeout(() => {
        if (this.hungUp) return;
        this.openSocket().then(() => {
          this.counts.reconnects += 1;
          this.ws.send(JSON.stringify({ cmd: 'register', roomid: this.roomId, clientid: this.clientId }));
          // The server answers a bad registration at once; silence for a moment means it took.
          setTimeout(() => {
            if (!this.reconnecting || this.hungUp) return;
            if (this.ws.readyState !== WebSocket.OPEN) { this.reconnect(attempt + 1); return; }
            this.reconnecting = false;
            this.onReregistered();
            showMessage('Signaling reconnected.', 'info');
            setStatus(this.pc && ['connected', 'completed'].includes(this.pc.iceConnectionState) ? 'Connected.'
              : (this.isInitiator ? 'Waiting for someone to join…' : 'Connecting…'));
          }, 1000);
        }).catch(() => this.reconnect(attempt + 1));
      }, RECONNECT_DELAYS[attempt]);
    }

    onReregistered() {}

    giveUp(why) {
      this.reconnecting = false;
      this.hangUp(false, why + ' Press Rejoin to join the room again.');
    }

    send(message) {
      const text = JSON.stringify(message);
      this.counts.sent += 1;
      if (message.type === 'candidate') this.counts.candidatesSent += 1;
      if (this.isInitiator) {
        const url = '/message/' + encodeURIComponent(this.roomId) + '/' + encodeURIComponent(this.clientId) + window.location.search;
        return postJson(url, text).then((answer) => {
          if (answer.result !== 'SUCCESS') showMessage('Message refused: ' + answer.result, 'error');
        }).catch((err) => showMessage(err.message, 'error'));
      }
      if (this.ws && this.ws.readyState === WebSocket.OPEN) {
        this.ws.send(JSON.stringify({ cmd: 'send', msg: text }));
        return Promise.resolve();
      }
      return fetch(this.p.wssPostUrl + '/' + this.roomId + '/' + this.clientId, { method: 'POST', body: text });
    }

    startPeerConnection() {
      this.remoteStream = new MediaStream();
      $('remote-video').srcObject = this.remoteStream;
      this.gathered = false;
      const pc = openPeerConnection(this.pcConfig, this.localStream, this.remoteStream,
                                    () => { this.gathered = true; }, (message) => this.send(message));
      this.pc = pc;
      this.watchStats(pc);
      watchIce(pc, () => this.isInitiator && this.pc === pc, () => this.restartIce(pc), this.counts);
      pc.addEventListener('iceconnectionstatechange', () => {
        $('ice-state').textContent = 'ICE: ' + pc.iceConnectionState;
        if (pc.iceConnectionState === 'connected' || pc.iceConnectionState === 'completed') setStatus('Connected.');
        else if (pc.iceConnectionState === 'failed') setStatus('Connection failed.');
        else if (pc.iceConnectionState === 'disconnected') setStatus('Connection interrupted…');
      });
      if (this.isInitiator) {
        this.makeOffer();
      }
      this.drainInbox();
    }

    restartIce(pc) {
      pc.createOffer({ iceRestart: true }).then((offer) => pc.setLocalDescription(offer)).then(() => {
        this.send({ sdp: pc.localDescription.sdp, type: 'offer' });
      }).catch(() => {});
    }

    makeOffer() {
      const pc = this.pc;
      pc.createOffer(this.p.offerOptions || {}).then((offer) => pc.setLocalDescription(offer)).then(() => {
        this.send({ sdp: pc.localDescription.sdp, type: 'offer' });
        this.watchGathering(pc);
      }).catch((err) => showMessage('Cannot make an offer: ' + err.message, 'error'));
    }

    // If gathering yields no candidate at all for a while (a browser that
    // found no network yet, a TURN server that did not answer), restart ICE
    // with a new offer; either side may do it, the other just answers.
    watchGathering(pc) {
      setTimeout(() => {
        if (this.pc !== pc || this.gathered || pc.iceGatheringState !== 'gathering' || pc.signalingState !== 'stable') return;
        if (this.counts.iceRestarts >= 3) return;
        this.counts.iceRestarts += 1;
        pc.createOffer({ iceRestart: true }).then((offer) => pc.setLocalDescription(offer)).then(() => {
          this.send({ sdp: pc.localDescription.sdp, type: 'offer' });
          this.watchGathering(pc);
        }).catch(() => {});
      }, 5000);
    }

    // Messages are applied in order; offer/answer go first (apprtc does the same
    // with messages stored in the room), candidates wait for a remote description.
    drainInbox() {
      if (!this.pc) return;
      const pending = this.inbox;
      this.inbox = [];
      pending.sort((a, b) => (a.type === 'candidate') - (b.type === 'candidate'));
      for (const message of pending) this.handle(message);
    }

    receive(message) {
      this.counts.received += 1;
      if (message.type === 'candidate') this.counts.candidatesReceived += 1;
      if (message.type === 'bye') {
        this.remoteHungUp();
        return;
      }
      this.inbox.push(message);
      this.drainInbox();
    }

    handle(message) {
      const pc = this.pc;
      if (message.type === 'offer') {
        pc.setRemoteDescription({ type: 'offer', sdp: message.sdp })
          .then(() => this.flushCandidates())
          .then(() => pc.createAnswer())
          .then((answer) => pc.setLocalDescription(answer))
          .then(() => {
            this.send({ sdp: pc.localDescription.sdp, type: 'answer' });
            this.watchGathering(pc);
          })
          .catch((err) => showMessage('Cannot answer: ' + err.message, 'error'));
      } else if (message.type === 'answer') {
        pc.setRemoteDescription({ type: 'answer', sdp: message.sdp })
          .then(() => this.flushCandidates())
          .catch((err) => showMessage('Cannot apply the answer: ' + err.message, 'error'));
      } else if (message.type === 'candidate') {
        const init = { candidate: message.candidate, sdpMid: message.id, sdpMLineIndex: message.label };
        if (pc.remoteDescription) pc.addIceCandidate(init).catch(() => {});
        else this.pendingCandidates.push(init);
      } else if (message.type === 'remove-candidates') {
        // Native clients send these; browsers have nothing to undo.
      } else {
        console.warn('unknown signaling message', message);
      }
    }

    // A line a person can glance at: relay or direct, round-trip time, bitrate both ways.
    watchStats(pc) {
      clearInterval(this.statsTimer);
      this.lastStats = null;
      this.statsTimer = setInterval(() => {
        if (this.pc !== pc) { clearInterval(this.statsTimer); return; }
        pc.getStats().then((report) => {
          let pair = null, sent = 0, received = 0;
          const byId = new Map();
          report.forEach((s) => {
            byId.set(s.id, s);
            if (s.type === 'transport' && s.selectedCandidatePairId) pair = s.selectedCandidatePairId;
            if (s.type === 'outbound-rtp') sent += s.bytesSent || 0;
            if (s.type === 'inbound-rtp') received += s.bytesReceived || 0;
          });
          const selected = pair && byId.get(pair);
          const now = performance.now();
          const last = this.lastStats;
          this.lastStats = { now, sent, received };
          if (!selected || !last) { $('stats').textContent = ''; return; }
          const local = byId.get(selected.localCandidateId) || {};
          const remote = byId.get(selected.remoteCandidateId) || {};
          const path = (local.candidateType === 'relay' || remote.candidateType === 'relay') ? 'relay' : 'direct';
          const rtt = selected.currentRoundTripTime !== undefined ? Math.round(selected.currentRoundTripTime * 1000) + ' ms' : '?';
          const secs = (now - last.now) / 1000;
          const kbps = (bytes) => Math.max(0, Math.round(bytes * 8 / 1000 / secs));
          $('stats').textContent = path + ' · ' + rtt + ' · ↑' + kbps(sent - last.sent) + ' ↓' + kbps(received - last.received) + ' kbit/s';
        }).catch(() => {});
      }, 2000);
    }

    flushCandidates() {
      const list = this.pendingCandidates;
      this.pendingCandidates = [];
      return Promise.all(list.map((c) => this.pc.addIceCandidate(c).catch(() => {})));
    }

    remoteHungUp() {
      showMessage('The remote side hung up.', 'info');
      this.isInitiator = true;
      if (!this.pc) return;  // not started yet: it will offer when it starts
      this.pc.close();
      this.pc = null;
      this.inbox = [];
      this.pendingCandidates = [];
      $('ice-state').textContent = '';
      // Like apprtc: the one left becomes initiator and offers again; the
      // offer is stored in the room for whoever joins next.
      this.isInitiator = true;
      setStatus('Waiting for someone to join…');
      this.startPeerConnection();
    }

    hangUp(unloading, why) {
      if (this.hungUp) return;
      this.hungUp = true;
      clearInterval(this.statsTimer);
      const opts = { method: 'POST', keepalive: true };
      if (this.clientId) {
        const room = encodeURIComponent(this.roomId), client = encodeURIComponent(this.clientId);
        // Order matters: leave first, so the room already counts one client
        // when the other side reacts to bye with a new offer.
        fetch('/leave/' + room + '/' + client, opts).catch(() => {});
        const bye = JSON.stringify({ type: 'bye' });
        if (this.ws && this.ws.readyState === WebSocket.OPEN) {
          this.ws.send(JSON.stringify({ cmd: 'send', msg: bye }));
        } else {
          fetch(this.p.wssPostUrl + '/' + room + '/' + client, { method: 'POST', body: bye, keepalive: true }).catch(() => {});
        }
        if (this.ws) this.ws.close();
        fetch(this.p.wssPostUrl + '/' + room + '/' + client, { method: 'DELETE', keepalive: true }).catch(() => {});
      } else if (this.ws) {
        this.ws.close();
      }
      if (this.pc) this.pc.close();
      this.pc = null;
      if (this.localStream) for (const t of this.localStream.getTracks()) t.stop();
      if (!unloading) {
        setStatus(why ? 'Disconnected.' : 'You hung up.');
        $('ice-state').textContent = '';
        $('stats').textContent = '';
        setControls(false);
        $('controls').hidden = true;
        $('rejoin-bar').hidden = false;
        showMessage(why || 'Call ended. Press Rejoin to join the room again.', why ? 'warning' : 'info');
      }
    }

    toggle(kind, button) {
      if (!this.localStream) return;
      const tracks = kind === 'audio' ? this.localStream.getAudioTracks() : this.localStream.getVideoTracks();
      const muted = button.getAttribute('aria-pressed') !== 'true';
      for (const t of tracks) t.enabled = !muted;
      button.setAttribute('aria-pressed', String(muted));
      button.textContent = kind === 'audio' ? (muted ? 'Unmute audio' : 'Mute audio') : (muted ? 'Start video' : 'Stop video');
    }
  }

  // ------------------------------------------------------------- group call
  // A mesh room (docs/rooms.md): the newcomer offers to every member present;
  // every message is addressed ("to") and arrives stamped by the server
  // ("from"); "joined"/"left" frames without "from" come from the server.
  class GroupCall extends Call {
    constructor(p) {
      super(p);
      this.peers = new Map();   // member id -> { pc, tile, video, label, offerer, pending: [], restarts }
      this.members = [];
      this.outbox = [];         // frames written while the socket was down, sent after re-registering
      this.received = [];       // types of messages from others the page does not act on (for tests and the console)
    }

    // The first remote peer connection (the two-person tests and the console look at call.pc).
    get pc() { const first = this.peers.values().next().value; return first ? first.pc : null; }
    set pc(value) {}

    join() {
      setStatus('Joining the room…');
      const socketOpen = this.openSocket();
      const sep = window.location.search ? '&' : '?';
      const joined = postJson('/join/' + encodeURIComponent(this.roomId) + window.location.search + sep + 'mesh=1').then((answer) => {
        if (answer.result === 'FULL') {
          window.location.href = '/r/' + encodeURIComponent(this.roomId) + window.location.search;
          throw new Error('room full');
        }
        if (answer.result !== 'SUCCESS') throw new Error('join failed: ' + answer.result + (answer.error ? ' (' + answer.error + ')' : ''));
        this.clientId = answer.params.client_id;
        if (answer.params.mesh !== 'true') throw Object.assign(new Error('two-person room'), { pairRoom: true });
        this.members = answer.params.members || [];
      });
      Promise.all([joined, socketOpen]).then(() => {
        this.ws.send(JSON.stringify({ cmd: 'register', roomid: this.roomId, clientid: this.clientId }));
        this.registered = true;
        setControls(true);
        setStatus(this.members.length ? 'Connecting…' : 'Waiting for others to join…');
        return Promise.all([this.mediaReady, this.iceReady]);
      }).then(() => {
        if (this.hungUp) return;
        for (const id of this.members) if (!this.peers.has(id)) this.connect(id, true);
      }).catch((err) => {
        if (err.pairRoom) { this.becomePair(); return; }
        if (err.message !== 'room full') {
          setStatus('Could not join.');
          showMessage(err.message, 'error');
        }
      });
    }

    // The room was made by an apprtc client (two people, apprtc's protocol): leave it and join as one.
    becomePair() {
      this.hungUp = true;
      if (this.localStream) for (const t of this.localStream.getTracks()) t.stop();
      const room = encodeURIComponent(this.roomId), client = encodeURIComponent(this.clientId);
      if (this.ws) this.ws.close();
      fetch('/leave/' + room + '/' + client, { method: 'POST' }).catch(() => {}).then(() => {
        startCall(new Call(Object.assign({}, this.p, { bypassJoinConfirmation: true })));
      });
    }

    onEnvelope(envelope) {
      if (envelope.error) { super.onEnvelope(envelope); return; }
      if (!envelope.msg) return;
      let message;
      try { message = JSON.parse(envelope.msg); } catch (e) { return; }
      if (typeof envelope.from === 'string') { this.fromMember(envelope.from, message); return; }
      if (message.type === 'members') {
        this.members = message.ids || [];
        for (const id of Array.from(this.peers.keys())) if (!this.members.includes(id)) this.drop(id, false);
      } else if (message.type === 'joined') {
        showMessage('Member ' + message.id + ' joined.', 'info');
      } else if (message.type === 'left') {
        this.drop(message.id, true);
      }
    }

    sendTo(id, message) {
      const frame = JSON.stringify({ cmd: 'send', msg: JSON.stringify(message), to: id });
      this.counts.sent += 1;
      if (message.type === 'candidate') this.counts.candidatesSent += 1;
      if (this.ws && this.ws.readyState === WebSocket.OPEN && !this.reconnecting) this.ws.send(frame);
      else this.outbox.push(frame);
    }

    onReregistered() {
      const frames = this.outbox;
      this.outbox = [];
      for (const frame of frames) this.ws.send(frame);
    }

    tile(id) {
      const tile = document.createElement('figure');
      tile.className = 'tile';
      tile.dataset.member = id;
      const video = document.createElement('video');
      video.autoplay = true;
      video.playsInline = true;
      const label = document.createElement('figcaption');
      label.textContent = 'Member ' + id;
      tile.append(video, label);
      $('grid').appendChild(tile);
      this.layout();
      return { tile, video, label };
    }

    layout() {
      const n = $('grid').children.length;
      $('grid').dataset.count = String(n);
      $('videos').classList.toggle('group', true);
    }

    connect(id, offerer) {
      const view = this.tile(id);
      const stream = new MediaStream();
      view.video.srcObject = stream;
      const peer = Object.assign(view, { offerer, pending: [], counts: { iceFailRestarts: 0, iceFailRestartsTotal: 0 } });
      const pc = openPeerConnection(this.pcConfig, this.localStream, stream,
                                    () => { peer.gathered = true; }, (message) => this.sendTo(id, message));
      peer.pc = pc;
      this.peers.set(id, peer);
      watchIce(pc, () => peer.offerer && this.peers.get(id) === peer, () => this.offer(id, true), peer.counts);
      pc.addEventListener('iceconnectionstatechange', () => {
        view.label.textContent = 'Member ' + id + ' · ' + pc.iceConnectionState;
        this.showState();
      });
      if (this.peers.size === 1) this.watchStats(pc);
      if (offerer) this.offer(id, false);
      return peer;
    }

    offer(id, iceRestart) {
      const peer = this.peers.get(id);
      if (!peer) return;
      const pc = peer.pc;
      pc.createOffer(Object.assign({}, this.p.offerOptions || {}, iceRestart ? { iceRestart: true } : {}))
        .then((offer) => pc.setLocalDescription(offer))
        .then(() => {
          this.sendTo(id, { type: 'offer', sdp: pc.localDescription.sdp });
          this.watchGatheringOf(id, peer);
        })
        .catch((err) => showMessage('Cannot make an offer: ' + err.message, 'error'));
    }

    // As Call.watchGathering, per member: no candidate at all after a while wakes ICE with a restart.
    watchGatheringOf(id, peer) {
      setTimeout(() => {
        const pc = peer.pc;
        if (this.peers.get(id) !== peer || peer.gathered || pc.iceGatheringState !== 'gathering' || pc.signalingState !== 'stable') return;
        if (this.counts.iceRestarts >= 3 * Math.max(1, this.peers.size)) return;
        this.counts.iceRestarts += 1;
        this.offer(id, true);
      }, 5000);
    }

    fromMember(id, message) {
      this.counts.received += 1;
      let peer = this.peers.get(id);
      if (message.type === 'offer') {
        if (!peer) peer = this.connect(id, false);
        const pc = peer.pc;
        pc.setRemoteDescription({ type: 'offer', sdp: message.sdp })
          .then(() => this.flushPending(peer))
          .then(() => pc.createAnswer())
          .then((answer) => pc.setLocalDescription(answer))
          .then(() => this.sendTo(id, { type: 'answer', sdp: pc.localDescription.sdp }))
          .catch((err) => showMessage('Cannot answer: ' + err.message, 'error'));
      } else if (message.type === 'answer' && peer) {
        peer.pc.setRemoteDescription({ type: 'answer', sdp: message.sdp })
          .then(() => this.flushPending(peer))
          .catch((err) => showMessage('Cannot apply the answer: ' + err.message, 'error'));
      } else if (message.type === 'candidate' && peer) {
        this.counts.candidatesReceived += 1;
        const init = { candidate: message.candidate, sdpMid: message.id, sdpMLineIndex: message.label };
        if (peer.pc.remoteDescription) peer.pc.addIceCandidate(init).catch(() => {});
        else peer.pending.push(init);
      } else if (message.type === 'bye') {
        this.drop(id, true);
      } else {
        this.received.push({ from: id, type: message.type, text: message.text });
      }
    }

    flushPending(peer) {
      const list = peer.pending;
      peer.pending = [];
      return Promise.all(list.map((c) => peer.pc.addIceCandidate(c).catch(() => {})));
    }

    drop(id, say) {
      const peer = this.peers.get(id);
      if (!peer) return;
      this.peers.delete(id);
      peer.pc.close();
      peer.tile.remove();
      this.layout();
      if (say) showMessage('Member ' + id + ' left.', 'info');
      const first = this.pc;
      if (first) this.watchStats(first); else $('stats').textContent = '';
      this.showState();
    }

    showState() {
      if (this.hungUp || this.reconnecting) return;
      const states = Array.from(this.peers.values(), (p) => p.pc.iceConnectionState);
      const up = states.filter((s) => s === 'connected' || s === 'completed').length;
      if (!states.length) setStatus('Waiting for others to join…');
      else if (up === states.length) setStatus('Connected with ' + up + (up === 1 ? ' member.' : ' members.'));
      else setStatus('Connected with ' + up + ' of ' + states.length + '…');
      $('ice-state').textContent = '';
    }

    hangUp(unloading, why) {
      if (this.hungUp) return;
      for (const id of Array.from(this.peers.keys())) {
        this.sendTo(id, { type: 'bye' });
        this.drop(id, false);
      }
      super.hangUp(unloading, why);
    }
  }

  function startCall(next) {
    call = next;
    window.webrtcstackCall = call;
    call.start();
  }

  const makeCall = (p) => ((p.groupCallSize || 2) > 2 ? new GroupCall(p) : new Call(p));
  let call = makeCall(params);
  window.webrtcstackCall = call;  // for tests and the console

  $('mute-audio').addEventListener('click', (e) => call.toggle('audio', e.currentTarget));
  $('mute-video').addEventListener('click', (e) => call.toggle('video', e.currentTarget));
  $('hangup').addEventListener('click', () => call.hangUp(false));
  window.addEventListener('pagehide', () => call.hangUp(true));
  // Rejoin in place: a new client in the same room (the join was confirmed once already).
  $('rejoin').addEventListener('click', () => {
    $('rejoin-bar').hidden = true;
    $('controls').hidden = false;
    $('messages').textContent = '';
    for (const id of ['mute-audio', 'mute-video']) {
      $(id).setAttribute('aria-pressed', 'false');
      $(id).textContent = id === 'mute-audio' ? 'Mute audio' : 'Stop video';
    }
    startCall(makeCall(Object.assign({}, params, { bypassJoinConfirmation: true })));
  });
  $('copy-link').addEventListener('click', () => {
    const link = $('room-link');
    const done = () => { $('copy-link').textContent = 'Copied'; setTimeout(() => { $('copy-link').textContent = 'Copy link'; }, 1500); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(link.value).then(done, () => { link.select(); document.execCommand('copy'); done(); });
    } else {
      link.select();
      document.execCommand('copy');
      done();
    }
  });

  const begin = () => call.start();
  if (document.visibilityState === 'prerender') {
    document.addEventListener('visibilitychange', begin, { once: true });
  } else {
    begin();
  }
})();
