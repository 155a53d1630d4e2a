"""Many nodes, one service: what the stack shares through Redis (``[redis] url``).

- :mod:`~webrtcstack.cluster.resp`: the Redis wire protocol (RESP2) and
  ``redis://`` URLs, sans-IO.
- :mod:`~webrtcstack.cluster.lease`: a node's identity and lease, sans-IO.
- :mod:`~webrtcstack.cluster.client`: the Twisted connection (reconnects
  with back-off, fails fast while Redis is away).
- :mod:`~webrtcstack.cluster.node`: the node's lease kept in Redis.

The design, and what is built so far, is in docs/scaling.md.
"""
