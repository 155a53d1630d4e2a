"""The Twisted shell of STUN/TURN: the only code under ``stun/`` and ``turn/`` that does I/O.

One controller behind every client transport, the same port for UDP and TCP:

* :mod:`.driver` owns the :class:`~webrtcstack.turn.engine.TurnEngine` and its one
  timer; STUN Binding goes to :class:`~webrtcstack.stun.binding.BindingHandler`,
  everything else to the engine; malformed packets and authentication failures
  are counted and logged at most once per interval (never per packet).
  ``build_turn_services(config, reactor, auth_secrets)`` builds the listeners.
* :mod:`.client_udp`: the UDP listener, with the ChannelData and Send-indication
  fast paths read straight from the engine's tables.
* :mod:`.client_stream`: TCP (and TLS, by wrapping the factory): framing, close
  on anything not ours, idle timeout.
* :mod:`.relay`: the relay sockets toward peers.
"""
