"""TURN (RFC 8656, RFC 6156): the sans-IO engine and, in ``adapters``, its Twisted shell."""
