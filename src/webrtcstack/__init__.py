"""webrtcstack: STUN/TURN, WebSocket signaling and an apprtc-compatible room server in one Twisted process."""

__version__ = "0.1.0"
