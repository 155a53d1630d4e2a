"""Two headless Chromium tabs on two different nodes sharing one Redis reach a relay-only call.

Run as a script by the trial test (``python -m tests.cluster.test_browser_nodes``), inside a network
namespace with only ``lo`` when ``unshare -n`` is allowed (under CI it must be).  The script starts
``redis-server`` and two stacks on loopback ports in that namespace; tab one loads the call page from
node a, tab two from node b (each joins, signals and relays through its own node), and it prints one
JSON line with what each tab's ``getStats()`` said.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from twisted.trial import unittest

from tests.integration.test_browser_call import drive_tabs, run_browser_module, stack_ini, start_stack, stop_stack
from tests.support import Lines, free_port


def node_ini(redis_port: int, node: str, http_port: int, turn_port: int, relay_low: int) -> str:
    return (stack_ini(http_port, turn_port, relay_low)
            + f"[redis]\nurl = redis://127.0.0.1:{redis_port}/0\nnode_id = {node}\nlease_seconds = 4\nrenew_seconds = 1\n")


def run_call(room: str = "nodescall", wait_s: float = 30.0) -> dict[str, Any]:
    """Redis, two nodes, two tabs (one per node); what the tabs reported."""
    tmp = Path(tempfile.mkdtemp(prefix="webrtcstack-nodes-"))
    redis_port = free_port(socket.SOCK_STREAM)
    redis = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(redis_port), "--bind",
                              "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert redis.stdout is not None
    redis_lines = Lines(redis.stdout)
    report: dict[str, Any] = {"tabs": [], "namespace": __import__("os").environ.get("WEBRTCSTACK_NETNS", "no")}
    stacks = []
    try:
        redis_lines.wait(r"Ready to accept connections", 20)
        urls = []
        for i, (node, host) in enumerate((("node-a", "127.0.0.1"), ("node-b", "localhost"))):
            http_port, turn_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
            node_dir = tmp / node
            node_dir.mkdir()
            stack, lines = start_stack(node_ini(redis_port, node, http_port, turn_port, 40000 + 300 * i + turn_port % 9000),
                                       node_dir)
            stacks.append((stack, lines, node_dir))
            lines.wait(rf"cluster: node {node} holds its lease", 15)
            # A different host name for the second tab gives it its own renderer (see test_browser_call).
            urls.append(f"http://{host}:{http_port}/r/{room}?it=relay")
        report["urls"] = urls
        drive_tabs(urls, tmp / "profile", report, wait_s=wait_s)
    finally:
        for stack, lines, node_dir in stacks:
            node_report: dict[str, Any] = {}
            stop_stack(stack, lines, node_dir, node_report)
            report.setdefault("stack_logs", []).append(node_report.get("stack_log_tail", ""))
        redis.terminate()
        redis.wait(10)
        redis_lines.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return report


class BrowserNodesTests(unittest.TestCase):
    timeout = 400

    def test_tabs_on_two_nodes_call_through_turn(self) -> None:
        """Tab one on node a, tab two on node b, one Redis: both reach ICE connected on a relay pair and decode remote video."""
        report = run_browser_module(self, "tests.cluster.test_browser_nodes")
        tabs = report["tabs"]
        detail = json.dumps(report, indent=1)[-8000:]
        self.assertEqual(len(tabs), 2, detail)
        self.assertNotEqual(report["urls"][0].split("/")[2], report["urls"][1].split("/")[2])
        for tab in tabs:
            self.assertEqual(tab.get("policy"), "relay", detail)
            self.assertIn(tab.get("ice"), ("connected", "completed"), detail)
            self.assertEqual((tab.get("local") or {}).get("type"), "relay", detail)
            self.assertGreater(tab.get("framesDecoded", 0), 0, detail)


if __name__ == "__main__":
    print(json.dumps(run_call()))
