"""The default config's TURN secret is kept: turn-credentials mints credentials the running stack accepts, across restarts."""

from __future__ import annotations

import os
import socket

from twisted.trial import unittest

from tests.cluster.test_turn_nodes import UDP, error
from tests.ops.test_cli import run
from tests.support import StackProcess, free_port
from tests.turn import msgs
from webrtcstack.stun.constants import AttrType, Method, MessageClass
from webrtcstack.turn.auth import long_term_key


def allocate(port: int, username: str, password: str) -> int | None:
    """One authenticated Allocate over UDP (realm from the challenge); the error code, None on success."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
        sock.send(msgs.encode(Method.ALLOCATE, MessageClass.REQUEST, os.urandom(12), UDP))
        challenge = msgs.decode(sock.recv(2048))
        realm, nonce = challenge.get(AttrType.REALM), challenge.get(AttrType.NONCE)
        tid = os.urandom(12)
        sock.send(msgs.encode(Method.ALLOCATE, MessageClass.REQUEST, tid,
                              UDP + [(AttrType.USERNAME, username.encode()), (AttrType.REALM, realm), (AttrType.NONCE, nonce)],
                              key=long_term_key(username, realm.decode(), password), fingerprint=True))
        return error(msgs.decode(sock.recv(2048)))


class KeptSecretTests(unittest.TestCase):
    timeout = 60

    def test_turn_credentials_work_against_the_running_stack_and_survive_a_restart(self) -> None:
        """No static_auth_secret: the first start keeps a secret in state_dir (0600); credentials from `webrtcstack turn-credentials` allocate on the running stack, and still do after a restart."""
        state = os.path.abspath(self.mktemp())
        turn = free_port(socket.SOCK_DGRAM)
        path = os.path.abspath(self.mktemp())
        text = (f"[stack]\nstate_dir = {state}\n[turn]\nlisten = 127.0.0.1:{turn}\nrelay_ip = 127.0.0.1\n"
                f"[http]\nlisten = 127.0.0.1:{free_port(socket.SOCK_STREAM)}\n[metrics]\nenabled = no\n")
        with open(path, "w") as f:
            f.write(text)
        for _start in range(2):
            stack = StackProcess(self, text)
            self.assertEqual(os.stat(os.path.join(state, "turn-secret")).st_mode & 0o777, 0o600)
            code, out, err = run("turn-credentials", "--user", "carol", "-c", path)
            self.assertEqual(code, 0, err)
            username = out.split("username: ")[1].split()[0]
            password = out.split("password: ")[1].split()[0]
            self.assertIsNone(allocate(turn, username, password))
            self.assertEqual(allocate(turn, username, "not-" + password), 401)
            stack.stop()
