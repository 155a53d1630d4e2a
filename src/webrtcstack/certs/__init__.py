"""Certificates the stack gets for itself over ACME (RFC 8555), the way Caddy does.

- :mod:`~webrtcstack.certs.renewal` (core, sans-IO): when to ask for a
  certificate, how long to wait after a failure, and what to tell the
  operator about it.
- :mod:`~webrtcstack.certs.acme_flow` (blocking, run in a thread): one order
  with the PyPI ``acme`` library -- account, http-01 challenges, finalize,
  download -- and where the account key and certificates are kept.
- :mod:`~webrtcstack.certs.service` (Twisted shell): the timer, the thread,
  writing the files and swapping them into the TLS listeners.
"""
