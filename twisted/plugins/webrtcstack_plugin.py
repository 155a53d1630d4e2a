"""twistd plugin: ``twistd -n webrtcstack -c etc/stack.ini``.

The module path is a string, so webrtcstack is imported only when the
subcommand is used (``twistd --help`` stays fast and never fails on us).
"""

from twisted.application.service import ServiceMaker

webrtcstack = ServiceMaker(
    "webrtcstack",
    "webrtcstack.tap",
    "STUN/TURN, WebSocket signaling and an apprtc-compatible room server",
    "webrtcstack",
)
