"""The call page's states in headless Chromium: controls, Rejoin, signaling reconnects, styled pages.

Run like tests/integration/test_browser_call.py (the trial test runs this
module as a script inside a loopback-only network namespace).  The page is
loaded through a small TCP relay in the script, so the test can cut the
signaling WebSocket as a network change would, and keep new connections
out for a while.  Waits are on DOM mutations (a MutationObserver), each with
a deadline.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

from twisted.trial import unittest

from tests.integration.test_browser_call import (CHROMEDRIVER, CHROMIUM, CHROMIUM_FLAGS, WAIT_FOR, run_browser_module,
                                                start_stack, stop_stack)
from tests.support import free_port


class Relay:
    """A TCP relay on loopback whose connections the test can cut, and keep out for a while."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.blocked = threading.Event()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.blocked.is_set():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """End every connection now (the page's WebSocket with them)."""
        with self.lock:
            doomed, self.sockets = self.sockets, []
        for s in doomed:
            # shutdown, not just close: it wakes the pump blocked in recv() and sends the FIN now
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def run_page_states() -> dict[str, Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    tmp = Path(tempfile.mkdtemp(prefix="webrtcstack-page-"))
    http_port = free_port(socket.SOCK_STREAM)
    report: dict[str, Any] = {"namespace": os.environ.get("WEBRTCSTACK_NETNS", "no")}
    stack, lines = start_stack(f"""\
[turn]
enabled = no
[http]
listen = 127.0.0.1:{http_port}
[signaling]
ping_interval_seconds = 0
register_timeout_seconds = 3
[metrics]
enabled = no
""", tmp)
    relay = Relay(http_port)
    base = f"http://127.0.0.1:{relay.port}"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp / 'profile'}", "--window-size=1200,800"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(60)

    def wait(expr: str, timeout_s: float = 15) -> bool:
        return bool(driver.execute_async_script(WAIT_FOR, expr, int(timeout_s * 1000)))

    def js(expr: str) -> Any:
        return driver.execute_script("return " + expr)

    try:
        # Landing page: no scrollbar.
        driver.get(base + "/")
        report["landing_overflow"] = js("document.documentElement.scrollHeight - window.innerHeight")
        # A bad room link: a styled page with a way back.
        driver.get(base + "/r/no!such")
        report["notfound"] = {"title": driver.title, "links": js("Array.from(document.links, a => a.getAttribute('href'))"),
                              "background": js("getComputedStyle(document.body).backgroundColor")}
        # The room-full page: its link must be readable on the dark background.
        for _ in range(2):
            driver.execute_script("return fetch('/join/fullroom', {method: 'POST'})")
        wait("true")
        driver.get(base + "/r/fullroom")
        report["full"] = {"title": driver.title, "link_color": js("getComputedStyle(document.querySelector('a')).color"),
                          "background": js("getComputedStyle(document.body).backgroundColor")}

        # The call page, asked to confirm: controls stay inactive until the join.
        driver.get(base + "/r/pagestates")
        wait("!document.getElementById('confirm-join').hidden")
        report["before_join_disabled"] = js("['mute-audio','mute-video','hangup'].map(id => document.getElementById(id).disabled)")
        driver.find_element(By.ID, "join-button").click()
        report["joined"] = wait("window.webrtcstackCall.registered && !document.getElementById('hangup').disabled")
        report["after_join_disabled"] = js("['mute-audio','mute-video','hangup'].map(id => document.getElementById(id).disabled)")
        first_client = js("window.webrtcstackCall.clientId")

        # Signaling cut (a network change): the page reconnects and registers the same client again.
        relay.cut()
        report["reconnected"] = wait("document.getElementById('messages').textContent.includes('Signaling reconnected.')")
        report["reconnects"] = js("window.webrtcstackCall.counts.reconnects")
        report["same_client"] = js("window.webrtcstackCall.clientId") == first_client

        # Cut and kept out past the grace period: the room forgot us; the page says so and offers Rejoin.
        relay.blocked.set()
        relay.cut()
        report["reconnecting"] = wait("document.getElementById('status').textContent.includes('reconnecting')")
        timer = threading.Timer(5.5, relay.blocked.clear)  # past the 3 s grace; retries at .25, 1.25, 3.25, 7.25 s
        timer.start()
        report["gave_up"] = wait("!document.getElementById('rejoin-bar').hidden", 20)
        timer.join()
        report["gave_up_text"] = js("document.getElementById('messages').textContent")

        if not report["gave_up"]:
            return report
        # Rejoin: a new client in the same room, controls active again.
        driver.find_element(By.ID, "rejoin").click()
        report["rejoined"] = wait("window.webrtcstackCall.registered && !document.getElementById('hangup').disabled")
        report["new_client"] = js("window.webrtcstackCall.clientId") not in (None, first_client)
        # Hang up: controls go, Rejoin comes.
        driver.find_element(By.ID, "hangup").click()
        report["after_hangup"] = {"rejoin_visible": wait("!document.getElementById('rejoin-bar').hidden"),
                                  "controls_hidden": js("document.getElementById('controls').hidden"),
                                  "status": js("document.getElementById('status').textContent")}
    finally:
        driver.quit()
        stop_stack(stack, lines, tmp / "gone", report)
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def _luminance(css: str) -> float:
    parts = [int(x) for x in css[css.index("(") + 1:css.index(")")].split(",")[:3]]
    channels = [(c / 255 / 12.92) if c / 255 <= 0.03928 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in parts]
    return 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]


class PageStateTests(unittest.TestCase):
    timeout = 200

    def test_page_states(self) -> None:
        """Controls inactive until joined; reconnect after a cut; Rejoin after giving up and after hang-up; styled pages."""
        report = run_browser_module(self, "tests.integration.test_page_states", timeout_s=150)
        detail = json.dumps(report, indent=1)[-5000:]
        self.assertLessEqual(report["landing_overflow"], 0, detail)
        self.assertEqual(report["notfound"]["title"], "Not found", detail)
        self.assertIn("/", report["notfound"]["links"], detail)
        self.assertEqual(report["notfound"]["background"], "rgb(17, 17, 17)", detail)
        self.assertEqual(report["full"]["title"], "Room full", detail)
        light, dark = _luminance(report["full"]["link_color"]), _luminance(report["full"]["background"])
        self.assertGreaterEqual((light + 0.05) / (dark + 0.05), 4.5, detail)  # WCAG AA for text
        self.assertEqual(report["before_join_disabled"], [True, True, True], detail)
        self.assertTrue(report["joined"], detail)
        self.assertEqual(report["after_join_disabled"], [False, False, False], detail)
        self.assertTrue(report["reconnected"], detail)
        self.assertEqual(report["reconnects"], 1, detail)
        self.assertTrue(report["same_client"], detail)
        self.assertTrue(report["reconnecting"], detail)
        self.assertTrue(report["gave_up"], detail)
        self.assertIn("The room no longer has your place", report["gave_up_text"], detail)
        self.assertTrue(report["rejoined"], detail)
        self.assertTrue(report["new_client"], detail)
        self.assertEqual(report["after_hangup"], {"rejoin_visible": True, "controls_hidden": True,
                                                  "status": "You hung up."}, detail)


if __name__ == "__main__":
    print(json.dumps(run_page_states()))
