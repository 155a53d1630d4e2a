"""Group calls in headless Chromium: three tabs in one room, relay-only through our TURN.

Run like tests/integration/test_browser_call.py: the trial test runs this
module as a script inside a loopback-only network namespace.  Three sites
(so three renderers): tab A through a TCP relay the script controls, tab B
at 127.0.0.1, tab C at third.localhost (mapped to 127.0.0.1).  The script
checks, in order:

1. every tab reaches ICE connected with both others over relay candidates
   and plays video from both;
2. a fourth visitor of the room (capacity 3) gets the "room full" page;
3. the server closes A's signaling socket (the sessions admin) while A
   cannot reconnect; B sends A a message in the gap (it waits in A's inbox);
   A reconnects, registers again, gets the message once, and its video
   never stops;
4. every TURN allocation is ended (the sessions admin): the tabs restart
   ICE and the calls resume through new relayed addresses;
5. C hangs up: A and B drop its tile and keep their call.

Every wait is on page events (ICE state, decoded frames, DOM mutations,
the selected candidate pair), each with a deadline.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from twisted.trial import unittest

from tests.integration.test_browser_call import (CHROMEDRIVER, CHROMIUM, CHROMIUM_FLAGS, REPO, WAIT_FOR,
                                                run_browser_module, stop_stack)
from tests.integration.test_page_states import Relay
from tests.support import Lines, free_port

TOKEN = "group-call-admin-token"

STACK_SCRIPT = """
import sys
from twisted.internet import reactor
from webrtcstack.config import load_config
from webrtcstack.service import build_service
top = build_service(load_config(sys.argv[1]), reactor, install_signals=False, admin_token=sys.argv[2])
top.startService()
reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
from twisted.logger import globalLogBeginner, textFileLogObserver
globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
reactor.run()
"""

# Every remote member of this tab connected and showing video (n of them).
CONNECTED_WITH = """
const expected = arguments[0], timeoutMs = arguments[1], done = arguments[arguments.length - 1];
let finished = false, timer = null, observer = null;
const hooked = new Set();
function finish(ok) { if (finished) return; finished = true; clearTimeout(timer); if (observer) observer.disconnect();
  document.removeEventListener('loadeddata', check, true); done(ok); }
function check() {
  const call = window.webrtcstackCall;
  if (!call || !call.peers) return;
  const peers = Array.from(call.peers.values());
  for (const p of peers) if (!hooked.has(p.pc)) { hooked.add(p.pc); p.pc.addEventListener('iceconnectionstatechange', check); }
  if (peers.length !== expected) return;
  for (const p of peers) {
    const s = p.pc.iceConnectionState;
    if ((s !== 'connected' && s !== 'completed') || p.video.readyState < 2) return;
  }
  finish(true);
}
observer = new MutationObserver(check);
observer.observe(document.documentElement, {subtree: true, childList: true, characterData: true, attributes: true});
document.addEventListener('loadeddata', check, true);
timer = setTimeout(() => finish(false), timeoutMs);
check();
"""

# The next frame of every remote video (media still flowing).
NEXT_FRAMES = """
const timeoutMs = arguments[0], done = arguments[arguments.length - 1];
const videos = Array.from(window.webrtcstackCall.peers.values(), (p) => p.video);
let left = videos.length;
const timer = setTimeout(() => done(false), timeoutMs);
if (!left) { clearTimeout(timer); done(false); }
for (const v of videos) v.requestVideoFrameCallback(() => { if (--left === 0) { clearTimeout(timer); done(true); } });
"""

# The ICE username fragment of each member's connection, as this tab offered or answered it.
LOCAL_UFRAGS = """
const done = arguments[arguments.length - 1], out = {};
for (const [id, p] of window.webrtcstackCall.peers) {
  const m = p.pc.localDescription && p.pc.localDescription.sdp.match(/a=ice-ufrag:(\\S+)/);
  out[id] = m ? m[1] : null;
}
done(out);
"""

# Every remote member reached again through a relayed candidate after an ICE restart: a new
# username fragment (RFC 8445 §9: a restart changes it), a relay pair, connected.  Ports alone
# cannot tell: the server may hand a freed port number to one of the new allocations.
NEW_RELAY_PATHS = """
const oldUfrags = arguments[0], timeoutMs = arguments[1], done = arguments[arguments.length - 1];
let finished = false;
const hooked = new Set();
function finish(ok) { if (!finished) { finished = true; clearTimeout(timer); clearInterval(poll); done(ok); } }
function transportOf(pc) { const s = pc.getSenders().find((x) => x.transport); return s ? s.transport.iceTransport : null; }
function ufragOf(pc) { const m = pc.localDescription && pc.localDescription.sdp.match(/a=ice-ufrag:(\\S+)/); return m ? m[1] : null; }
function check() {
  const peers = Array.from(window.webrtcstackCall.peers.entries());
  let ok = peers.length > 0;
  for (const [id, p] of peers) {
    if (!hooked.has(p.pc)) {
      hooked.add(p.pc);
      p.pc.addEventListener('iceconnectionstatechange', check);
      const t = transportOf(p.pc);
      if (t) t.addEventListener('selectedcandidatepairchange', check);
    }
    const t = transportOf(p.pc);
    const pair = t && t.getSelectedCandidatePair();
    const s = p.pc.iceConnectionState;
    if (!pair || pair.local.type !== 'relay' || ufragOf(p.pc) === oldUfrags[id] || (s !== 'connected' && s !== 'completed')) ok = false;
  }
  if (ok) finish(true);
}
const timer = setTimeout(() => finish(false), timeoutMs);
// A renegotiation changes the local description without an ICE event: look again now and then too.
const poll = setInterval(check, 500);
check();
"""

TAB_STATE = """
const done = arguments[arguments.length - 1];
const call = window.webrtcstackCall;
const out = {clientId: call.clientId, status: document.getElementById('status').textContent,
             messages: document.getElementById('messages').textContent,
             tiles: Array.from(document.querySelectorAll('#grid .tile'), (t) => t.dataset.member),
             received: call.received || [], counts: call.counts, peers: {}};
Promise.all(Array.from(call.peers || [], ([id, p]) => p.pc.getStats().then((stats) => {
  const info = {ice: p.pc.iceConnectionState, framesDecoded: 0, offerer: p.offerer,
                restarts: p.counts.iceFailRestartsTotal};
  let pairId = null;
  stats.forEach((r) => { if (r.type === 'transport' && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId; });
  stats.forEach((r) => {
    if (r.type === 'inbound-rtp' && r.kind === 'video') info.framesDecoded += r.framesDecoded || 0;
    if (r.type === 'candidate-pair' && r.id === pairId) {
      const local = stats.get(r.localCandidateId);
      if (local) info.local = {type: local.candidateType, address: local.address, port: local.port};
    }
  });
  out.peers[id] = info;
}))).then(() => done(out)).catch((e) => done({error: String(e)}));
"""


def admin(metrics_port: int, method: str, path: str) -> Any:
    request = urllib.request.Request(f"http://127.0.0.1:{metrics_port}/admin/{path}", method=method,
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.loads(r.read())


def run_group_call() -> dict[str, Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    tmp = Path(tempfile.mkdtemp(prefix="webrtcstack-group-"))
    http_port, metrics_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    turn_port = free_port(socket.SOCK_DGRAM)
    relay_low = 40000 + (turn_port % 20000)
    ini = tmp / "stack.ini"
    ini.write_text(f"""\
[turn]
listen = 127.0.0.1:{turn_port}
relay_ip = 127.0.0.1
relay_ports = {relay_low}-{relay_low + 300}
allow_loopback_peers = yes
static_auth_secret = group-call-secret
[http]
listen = 127.0.0.1:{http_port}
[rooms]
capacity = 3
bypass_join_confirmation = yes
[signaling]
ping_interval_seconds = 0
[metrics]
listen = 127.0.0.1:{metrics_port}
""")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    stack = subprocess.Popen([sys.executable, "-c", STACK_SCRIPT, str(ini), TOKEN], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
    assert stack.stdout is not None
    lines = Lines(stack.stdout)
    report: dict[str, Any] = {"namespace": os.environ.get("WEBRTCSTACK_NETNS", "no"), "steps": []}
    driver = None
    try:
        lines.wait(r"webrtcstack ready: ", 30)
        relay = Relay(http_port)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        flags = [f for f in CHROMIUM_FLAGS if not f.startswith("--host-resolver-rules")]
        flags.append("--host-resolver-rules=MAP third.localhost 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE localhost, "
                     "EXCLUDE 127.0.0.1")
        for flag in flags + [f"--user-data-dir={tmp / 'profile'}"]:
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.set_script_timeout(120)
        # Small video (320x240 at 15 fps): six streams encode and decode at once on two cores, beside
        # whatever else the suite runs.
        urls = {"A": f"http://127.0.0.1:{relay.port}/r/grouproom?it=relay&video=maxWidth=320,maxHeight=240,maxFrameRate=15",
                "B": f"http://localhost:{http_port}/r/grouproom?it=relay&video=maxWidth=320,maxHeight=240,maxFrameRate=15",
                "C": f"http://third.localhost:{http_port}/r/grouproom?it=relay&video=maxWidth=320,maxHeight=240,maxFrameRate=15"}
        tabs: dict[str, str] = {}
        for i, (name, url) in enumerate(urls.items()):
            if i:
                driver.switch_to.new_window("tab")
            driver.get(url)
            tabs[name] = driver.current_window_handle

        def on(name: str, script: str, *args: Any) -> Any:
            driver.switch_to.window(tabs[name])
            return driver.execute_async_script(script, *args)

        def state(name: str) -> dict[str, Any]:
            return on(name, TAB_STATE)

        # 1. A full mesh of three.
        report["connected3"] = {name: on(name, CONNECTED_WITH, 2, 90000) for name in tabs}
        report["mesh"] = {name: state(name) for name in tabs}
        if not all(report["connected3"].values()):
            return report
        ids = {name: report["mesh"][name]["clientId"] for name in tabs}

        # 2. A fourth visitor: the room is full.
        driver.switch_to.new_window("tab")
        driver.get(f"http://127.0.0.1:{http_port}/r/grouproom?it=relay&video=maxWidth=320,maxHeight=240,maxFrameRate=15")
        report["fourth_title"] = driver.title
        driver.close()

        # 3. The server closes A's socket; a message to A in the gap waits and arrives once.
        relay.blocked.set()
        admin(metrics_port, "DELETE", f"sessions/socket/grouproom/{ids['A']}")
        driver.switch_to.window(tabs["B"])
        driver.execute_script("window.webrtcstackCall.sendTo(arguments[0], {type: 'note', text: 'sent in the gap'})", ids["A"])
        rooms = admin(metrics_port, "GET", "sessions")["rooms"]
        report["inbox_during_gap"] = {m["client"]: m["inbox"] for r in rooms for m in r["members"]}
        relay.blocked.clear()
        driver.switch_to.window(tabs["A"])
        report["reconnected"] = driver.execute_async_script(
            WAIT_FOR, "document.getElementById('messages').textContent.includes('Signaling reconnected.')", 30000)
        report["frames_after_reconnect"] = on("A", NEXT_FRAMES, 10000)
        report["after_reconnect"] = state("A")

        # 4. Every relay goes: ICE restarts and the calls come back on new relayed addresses.
        old_ufrags = {name: on(name, LOCAL_UFRAGS) for name in tabs}
        report["old_ufrags"] = old_ufrags
        before = admin(metrics_port, "GET", "sessions")["allocations"]
        report["old_relay_ports"] = sorted({int(a.rsplit(":", 1)[1]) for alloc in before for a in alloc["relayed"]})
        for alloc in before:
            admin(metrics_port, "DELETE", f"sessions/{alloc['id']}")
        report["new_paths"] = {name: on(name, NEW_RELAY_PATHS, old_ufrags[name], 60000) for name in tabs}
        report["new_ufrags"] = {name: on(name, LOCAL_UFRAGS) for name in tabs}
        report["after_restart"] = {name: state(name) for name in tabs}
        report["frames_after_restart"] = {name: on(name, NEXT_FRAMES, 10000) for name in tabs}

        # 5. C hangs up: A and B keep their call and drop C's tile.
        driver.switch_to.window(tabs["C"])
        driver.find_element(By.ID, "hangup").click()
        report["connected2"] = {name: on(name, CONNECTED_WITH, 1, 30000) for name in ("A", "B")}
        report["after_hangup"] = {name: state(name) for name in ("A", "B")}
        report["frames_after_hangup"] = {name: on(name, NEXT_FRAMES, 10000) for name in ("A", "B")}
        report["ids"] = ids
    finally:
        if driver is not None:
            driver.quit()
        stop_stack(stack, lines, tmp, report)
    return report


class GroupCallTests(unittest.TestCase):
    timeout = 400

    def test_three_tabs_mesh_reconnect_ice_restart_and_hangup(self) -> None:
        """Three relay-only tabs in one room: full mesh, room full for a fourth, reconnect with the gap's message once, ICE restart on new relays, a hang-up."""
        report = run_browser_module(self, "tests.integration.test_group_call", timeout_s=300)
        detail = json.dumps({k: v for k, v in report.items() if k != "stack_log_tail"}, indent=1)[-8000:] + \
            "\n" + str(report.get("stack_log_tail", ""))[-3000:]
        self.assertEqual(report["connected3"], {"A": True, "B": True, "C": True}, detail)
        for name, tab in report["mesh"].items():
            self.assertEqual(len(tab["peers"]), 2, detail)
            self.assertEqual(len(tab["tiles"]), 2, detail)
            for peer in tab["peers"].values():
                self.assertEqual((peer["ice"] in ("connected", "completed"), (peer.get("local") or {}).get("type")),
                                 (True, "relay"), detail)
                self.assertGreater(peer["framesDecoded"], 0, detail)
        self.assertEqual(report["fourth_title"], "Room full", detail)
        ids = report["ids"]
        self.assertEqual(report["inbox_during_gap"][ids["A"]], 1, detail)
        self.assertTrue(report["reconnected"], detail)
        notes = [r for r in report["after_reconnect"]["received"] if r["type"] == "note"]
        self.assertEqual(notes, [{"from": ids["B"], "type": "note", "text": "sent in the gap"}], detail)
        self.assertEqual(report["after_reconnect"]["counts"]["reconnects"], 1, detail)
        self.assertTrue(report["frames_after_reconnect"], detail)
        self.assertEqual(report["new_paths"], {"A": True, "B": True, "C": True}, detail)
        self.assertEqual(report["frames_after_restart"], {"A": True, "B": True, "C": True}, detail)
        self.assertEqual(report["connected2"], {"A": True, "B": True}, detail)
        self.assertEqual(sorted(report["after_hangup"]["A"]["tiles"]), [ids["B"]], detail)
        self.assertEqual(sorted(report["after_hangup"]["B"]["tiles"]), [ids["A"]], detail)
        self.assertEqual(report["frames_after_hangup"], {"A": True, "B": True}, detail)


if __name__ == "__main__":
    print(json.dumps(run_group_call()))
