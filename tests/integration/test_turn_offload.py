"""The kernel offload's real-socket cases, run inside a loopback-only network namespace this test makes.

``offload_cases.py`` attaches an XDP program, so it runs under ``unshare -n``
(a new network namespace with only ``lo``), never in the host's: this test
starts trial on that module there and passes or fails with it.  Needs root
(CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN for the namespace), clang, coturn's
client tools and aioice; under CI each is required.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from typing import Any

from twisted.internet import defer, utils
from twisted.trial import unittest

from tests.support import need_tool, require, unshare_missing

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class KernelOffloadTests(unittest.TestCase):
    timeout = 300

    @defer.inlineCallbacks
    def test_offload_cases_in_a_namespace(self) -> Any:
        """Every case of offload_cases.py passes in a namespace of its own (see that module for the list)."""
        require(unshare_missing())
        need_tool("clang", "clang")
        need_tool("turnutils_uclient")
        inner = shlex.join([sys.executable, "-m", "twisted.trial", "--temp-directory",
                            os.path.abspath(self.mktemp()), "tests.integration.offload_cases"])
        out, err, code = yield utils.getProcessOutputAndValue(
            "unshare", ["-n", "sh", "-c", f"ip link set lo up && WEBRTCSTACK_NETNS=yes exec {inner}"],
            env=dict(os.environ), path=ROOT)
        text = (out + err).decode(errors="replace")
        summary = re.findall(r"^(PASSED|FAILED) \((.*)\)$", text, re.M)
        self.assertTrue(summary, text[-4000:])
        self.assertEqual(summary[-1][0], "PASSED", text[-6000:])
        self.assertEqual(code, 0, text[-4000:])
        self.assertNotIn("skips=", summary[-1][1], text[-4000:])
        self.assertRegex(summary[-1][1], r"successes=16\b")
