"""End to end: two headless Chromium tabs call each other through the whole stack, relayed by our TURN.

The trial test runs this module as a script (``python -m
tests.integration.test_browser_call``), inside a network namespace that has
only ``lo`` when ``unshare -n`` is allowed, so no packet leaves the machine.
The script starts the stack (``build_service``) in a child process on
loopback ports, drives Chromium with selenium, and prints one JSON line with
what each tab's ``getStats()`` said.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from twisted.trial import unittest

from tests.support import Lines, free_port, in_ci, require, unshare_missing

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REPO = Path(__file__).resolve().parents[2]

#: the issue's flags: WebRTC on loopback, and nothing but loopback
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--webrtc-ip-handling-policy=default_public_interface_only",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# What one tab reports: ICE state, the selected pair's candidate types, frames decoded.
STATS_SCRIPT = """
const done = arguments[arguments.length - 1];
const call = window.webrtcstackCall;
const status = (document.getElementById('status') || {}).textContent;
const messages = (document.getElementById('messages') || {}).textContent;
if (!call || !call.pc) { done({ready: false, status: status, messages: messages}); return; }
const pc = call.pc;
pc.getStats().then((stats) => {
  const out = {ready: true, ice: pc.iceConnectionState, signaling: pc.signalingState,
               policy: pc.getConfiguration().iceTransportPolicy, framesDecoded: 0,
               gathering: pc.iceGatheringState, counts: call.counts, candidates: [],
               status: status, messages: messages,
               statsLine: (document.getElementById('stats') || {}).textContent};
  let pairId = null;
  stats.forEach((r) => { if (r.type === 'transport' && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId; });
  stats.forEach((r) => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') out.framesDecoded += r.framesDecoded || 0;
    if (r.type === 'local-candidate' || r.type === 'remote-candidate') out.candidates.push([r.type, r.candidateType, r.address, r.port, r.protocol, r.relayProtocol]);
    if (r.type === 'candidate-pair' && r.id === pairId) {
      out.pairState = r.state;
      const local = stats.get(r.localCandidateId), remote = stats.get(r.remoteCandidateId);
      if (local) out.local = {type: local.candidateType, address: local.address, port: local.port, url: local.url};
      if (remote) out.remote = {type: remote.candidateType, address: remote.address, port: remote.port};
    }
  });
  done(out);
}).catch((e) => done({ready: false, error: String(e)}));
"""


# Resolves when the expression (evaluated in the page) turns true; false after the timeout.  Waits on DOM
# mutations (a MutationObserver), not by polling.
WAIT_FOR = """
const expr = arguments[0], timeoutMs = arguments[1], done = arguments[arguments.length - 1];
const test = () => { try { return !!eval(expr); } catch (e) { return false; } };
if (test()) { done(true); return; }
const observer = new MutationObserver(() => { if (test()) { observer.disconnect(); clearTimeout(timer); done(true); } });
observer.observe(document.documentElement, {subtree: true, childList: true, characterData: true, attributes: true});
const timer = setTimeout(() => { observer.disconnect(); done(false); }, timeoutMs);
"""


# Waits, inside one tab, for the events that mean "this tab has its call":
# ICE connected (the peer connection's own event) and a decoded remote frame
# (the video element's "loadeddata"), or for one of its candidates to appear
# (``until`` = "candidate"), with one deadline; no polling.
WAIT_SCRIPT = """
const timeoutMs = arguments[0], until = arguments[1], done = arguments[arguments.length - 1];
const video = document.getElementById('remote-video');
const status = document.getElementById('status');
let finished = false, timer = null, observer = null, hooked = null;
function finish(why) {
  if (finished) return;
  finished = true;
  clearTimeout(timer);
  if (observer) observer.disconnect();
  video.removeEventListener('loadeddata', check);
  done(why);
}
function check() {
  const call = window.webrtcstackCall, pc = call && call.pc;
  if (pc && pc !== hooked) {
    hooked = pc;
    pc.addEventListener('iceconnectionstatechange', check);
    pc.addEventListener('icecandidate', check);
  }
  if (!pc) return;
  if (until === 'candidate' && pc.localDescription && pc.localDescription.sdp.indexOf('a=candidate') >= 0) finish('candidate');
  if (until === 'candidate' && call.counts && call.counts.candidatesSent > 0) finish('candidate');
  const connected = pc.iceConnectionState === 'connected' || pc.iceConnectionState === 'completed';
  if (connected && video.readyState >= 2) finish('ok');
}
video.addEventListener('loadeddata', check);
observer = new MutationObserver(check);  // the page's status line changes at every step of the call
observer.observe(status, {childList: true, characterData: true, subtree: true});
timer = setTimeout(() => finish('timeout'), timeoutMs);
check();
"""


def gathered_nothing(tab: dict[str, Any]) -> bool:
    """A tab whose peer connection never produced a local candidate (Chromium sent no STUN at all)."""
    return not any(c[0] == "local-candidate" for c in tab.get("candidates", []))


#: a tab with no local candidate after this long has hit Chromium's stall (see the test)
STALL_S = 10.0


def missing_prerequisite() -> str | None:
    """Why the browser test cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    return None


STACK_SCRIPT = """
import sys
from twisted.internet import reactor
from webrtcstack.config import load_config
from webrtcstack.service import build_service
top = build_service(load_config(sys.argv[1]), reactor, install_signals=False)
top.startService()
reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
from twisted.logger import globalLogBeginner, textFileLogObserver
globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
reactor.run()
"""


def stack_ini(http_port: int, turn_port: int, relay_low: int) -> str:
    """The config the browser test runs the stack with: loopback only, relay to loopback allowed."""
    return f"""\
[turn]
listen = 127.0.0.1:{turn_port}
relay_ip = 127.0.0.1
relay_ports = {relay_low}-{relay_low + 200}
allow_loopback_peers = yes
static_auth_secret = browser-test-secret
[http]
listen = 127.0.0.1:{http_port}
[rooms]
bypass_join_confirmation = yes
[signaling]
ping_interval_seconds = 0
[metrics]
enabled = no
"""


def start_stack(ini_text: str, tmp: Path) -> tuple[subprocess.Popen[bytes], Lines]:
    """Write the config into ``tmp``, start the stack in a child process and wait for its "ready" line.

    Returns the process and its output (read by a thread as it comes, so the
    pipe never fills).
    """
    ini = tmp / "stack.ini"
    ini.write_text(ini_text)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    stack = subprocess.Popen([sys.executable, "-c", STACK_SCRIPT, str(ini)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
    assert stack.stdout is not None
    lines = Lines(stack.stdout)
    lines.wait(r"webrtcstack ready: ", 30)
    return stack, lines


def stop_stack(stack: subprocess.Popen[bytes], lines: Lines, tmp: Path, report: dict[str, Any]) -> None:
    """Stop the stack, keep the tail of its log in the report, remove ``tmp``."""
    stack.terminate()
    try:
        stack.wait(10)
    except subprocess.TimeoutExpired:
        stack.kill()
        stack.wait(10)
    lines.close()
    report["stack_log_tail"] = "\n".join(lines.seen)[-3000:]
    shutil.rmtree(tmp, ignore_errors=True)


def drive_tabs(urls: list[str], profile: Path, report: dict[str, Any], *, wait_s: float,
               extra_flags: tuple[str, ...] = ()) -> None:
    """Open each URL in its own Chromium tab and poll ``getStats()`` into ``report["tabs"]``.

    Stops when every tab has a relayed call with decoded video, when ``wait_s``
    passes, or when a tab shows Chromium's gathering stall (``report["stalled"]``).
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + list(extra_flags) + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_script_timeout(wait_s + 30)
        handles = []
        for i, url in enumerate(urls):
            if i:
                driver.switch_to.new_window("tab")
            driver.get(url)
            if not i:
                report["page_protocol"] = driver.execute_script("return location.protocol")
                report["secure_context"] = driver.execute_script("return window.isSecureContext")
            handles.append(driver.current_window_handle)
        deadline = time.monotonic() + wait_s

        def wait_each(until: str, limit: float) -> None:
            for handle in handles:
                driver.switch_to.window(handle)
                left_ms = max(0, int((limit - time.monotonic()) * 1000))
                driver.execute_async_script(WAIT_SCRIPT, left_ms, until)

        def stats() -> list[dict[str, Any]]:
            tabs = []
            for handle in handles:
                driver.switch_to.window(handle)
                tabs.append(driver.execute_async_script(STATS_SCRIPT))
            report["tabs"] = tabs
            return tabs

        # Every tab must have gathered a candidate by STALL_S (else it hit
        # Chromium's stall), then have its call by the deadline.
        wait_each("candidate", min(deadline, time.monotonic() + STALL_S))
        tabs = stats()
        if not all(_tab_ok(t) for t in tabs) and any(not t.get("ready") or gathered_nothing(t) for t in tabs):
            report["stalled"] = True
            return
        wait_each("call", deadline)
        # The page's live stats line (path, round-trip time, bitrate) is refreshed every 2 s.
        for handle in handles:
            driver.switch_to.window(handle)
            driver.execute_async_script(WAIT_FOR, "document.getElementById('stats').textContent.includes(' ms')", 8000)
        stats()
    finally:
        driver.quit()


def run_call(room: str = "browsertest", wait_s: float = 30.0) -> dict[str, Any]:
    """Start the stack and two tabs; return what the tabs reported (the script's work)."""
    tmp = Path(tempfile.mkdtemp(prefix="webrtcstack-browser-"))
    http_port, turn_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    stack, stack_lines = start_stack(stack_ini(http_port, turn_port, 40000 + (turn_port % 20000)), tmp)
    report: dict[str, Any] = {"tabs": [], "namespace": os.environ.get("WEBRTCSTACK_NETNS", "no")}
    try:
        base = f"http://127.0.0.1:{http_port}"
        # The second tab uses "localhost" so that it is another site and gets
        # its own renderer process: two peer connections in one renderer of a
        # namespace with only lo sometimes leave the second one gathering
        # forever (Chromium finds no network to bind to; seen with 156).
        urls = [f"{base}/r/{room}?it=relay", f"http://localhost:{http_port}/r/{room}?it=relay"]
        drive_tabs(urls, tmp / "profile", report, wait_s=wait_s)
    finally:
        stop_stack(stack, stack_lines, tmp, report)
    return report


def _tab_ok(tab: dict[str, Any]) -> bool:
    return (tab.get("ice") in ("connected", "completed") and (tab.get("local") or {}).get("type") == "relay"
            and tab.get("framesDecoded", 0) > 0)


def run_with_stall_retries(command: list[str], plain: list[str], env: dict[str, str], *, timeout_s: float = 120) -> dict[str, Any]:
    """Run a browser script (``command``, maybe under ``unshare``) and return its JSON report.

    In a namespace with only lo, Chromium 156 now and then leaves a peer
    connection "gathering" without sending a single STUN packet: a packet
    capture on lo shows the other tab allocating fine and this one sending
    nothing, so it is not our server (adding a loopback address to trigger a
    network change does not wake it).  The call page restarts ICE when
    gathering gives nothing for 5 s, which wakes it; should a tab still have
    no candidate after :data:`STALL_S`, the script reports it as
    ``stalled`` (:data:`STALL_S`); it is retried with a fresh browser and
    stack, up to three times in the namespace and last on the host's network
    (``plain``: every address is still 127.0.0.1 and the resolver rules keep
    every name local) -- except under CI, where only the namespace counts and
    ``plain`` is never tried.  Any other outcome is returned at once.
    ``report["attempts"]`` says what happened.
    """
    attempts = [command] * 3 + ([plain] if command is not plain and not in_ci() else [])
    tried: list[str] = []
    report: dict[str, Any] = {}
    for cmd in attempts:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, timeout=timeout_s)
        lines = proc.stdout.decode(errors="replace").strip().splitlines()
        if not lines:
            raise AssertionError(proc.stderr.decode(errors="replace")[-3000:])
        report = json.loads(lines[-1])
        tried.append(("stalled" if report.get("stalled") else "ran") + (" in netns" if report.get("namespace") == "yes" else " on host"))
        if not report.get("stalled"):
            break
    report["attempts"] = tried
    return report


def run_browser_module(case: unittest.TestCase, module: str, timeout_s: float = 120) -> dict[str, Any]:
    """Run a browser test module as a script and return its report.

    Fails (under CI) or skips when Chromium, chromedriver or selenium is
    missing; runs inside a network namespace with only ``lo`` when
    ``unshare -n`` works (under CI it must, and the report must say the
    call ran there); retries Chromium's gathering stall
    (:func:`run_with_stall_retries`).
    """
    require(missing_prerequisite())
    no_namespace = unshare_missing()
    if in_ci():
        require(no_namespace)
    command: list[str] = [sys.executable, "-m", module]
    plain = command
    if no_namespace is None:
        command = ["unshare", "-n", "sh", "-c", "ip link set lo up && WEBRTCSTACK_NETNS=yes exec " + shlex.join(command)]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + str(REPO))
    report = run_with_stall_retries(command, plain, env, timeout_s=timeout_s)
    print(f"{module}: attempts:", ", ".join(report["attempts"]))
    if in_ci():
        case.assertEqual(report.get("namespace"), "yes",
                         f"under CI the call must run in the loopback-only namespace: {report['attempts']}")
    return report


class BrowserCallTests(unittest.TestCase):
    timeout = 400

    def test_two_tabs_call_through_turn(self) -> None:
        """Two tabs of /r/<room>?it=relay reach ICE connected on a relay candidate pair through our TURN and decode remote video."""
        report = run_browser_module(self, "tests.integration.test_browser_call")
        tabs = report["tabs"]
        detail = json.dumps(report, indent=1)[-6000:]
        self.assertEqual(len(tabs), 2, detail)
        for tab in tabs:
            self.assertEqual(tab.get("policy"), "relay", detail)
            self.assertIn(tab.get("ice"), ("connected", "completed"), detail)
            self.assertEqual((tab.get("local") or {}).get("type"), "relay", detail)
            self.assertEqual((tab.get("local") or {}).get("address"), "127.0.0.1", detail)
            self.assertGreater(tab.get("framesDecoded", 0), 0, detail)
            self.assertRegex(tab.get("statsLine") or "", r"^relay · \d+ ms · ↑\d+ ↓\d+ kbit/s$", detail)


if __name__ == "__main__":
    print(json.dumps(run_call()))
