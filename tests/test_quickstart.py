"""The README's first command, run literally in a fresh shell with only Debian's ``/usr/bin/python3``.

The command makes a virtual environment, installs this package into it and
starts the stack on the shipped config; the test then asks the call page.
It runs in a copy of the source tree (no ``.venv`` or build left over),
inside a network namespace with only ``lo`` (the default config's fixed
ports cannot clash with the host, and nothing leaves the machine), with
``PATH=/usr/bin:/bin`` and a ``HOME`` of its own.  pip installs from the
wheelhouse ``.ci/setup-tests`` filled (``PIP_NO_INDEX``), the only
difference from an operator's shell: the test has no internet.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

from twisted.trial import unittest

from tests.support import require, unshare_missing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSTEM_PYTHON = "/usr/bin/python3"
WHEELHOUSE = os.environ.get("WEBRTCSTACK_WHEELHOUSE") or os.path.expanduser("~/.cache/webrtcstack/wheelhouse")

# Runs inside the namespace with the system python (stdlib only): the command, its ready line, one GET.
DRIVER = r"""
import json, os, signal, subprocess, sys, time, urllib.request
command, cwd = sys.argv[1], sys.argv[2]
proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                        start_new_session=True)
out, report, deadline = [], {}, time.monotonic() + 240
for raw in iter(proc.stdout.readline, b""):
    line = raw.decode(errors="replace").rstrip()
    out.append(line)
    if "webrtcstack ready: " in line:
        with urllib.request.urlopen("http://127.0.0.1:8080/", timeout=10) as r:
            report = {"status": r.status, "page": r.read().decode(errors="replace")[:2000]}
        break
    if time.monotonic() > deadline:
        break
os.killpg(proc.pid, signal.SIGTERM)
try:
    proc.wait(30)
except subprocess.TimeoutExpired:
    os.killpg(proc.pid, signal.SIGKILL)
report["output"] = out[-40:]
print(json.dumps(report))
"""


def readme_first_command() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    m = re.search(r"## Quick start.*?```(?:sh|bash)\n([^\n]+)\n```", readme, re.S)
    assert m is not None, "the README's quick start has no command block"
    return m.group(1).strip()


class QuickStartTests(unittest.TestCase):
    timeout = 400

    def test_readme_first_command_on_system_python(self) -> None:
        """The README's first line, in a clean shell with Debian's python3 only, gives a stack that serves the page."""
        require(None if os.access(SYSTEM_PYTHON, os.X_OK) else f"{SYSTEM_PYTHON} is missing (apt-get install python3-venv)")
        venv_ok = subprocess.run([SYSTEM_PYTHON, "-c", "import ensurepip, venv"], capture_output=True).returncode == 0
        require(None if venv_ok else f"{SYSTEM_PYTHON} cannot make a virtual environment (apt-get install python3-venv)")
        require(None if os.path.isdir(WHEELHOUSE) and os.listdir(WHEELHOUSE)
                else f"no wheelhouse at {WHEELHOUSE} (bash .ci/setup-tests makes it)")
        require(unshare_missing())
        command = readme_first_command()
        self.assertTrue(command.startswith("python3 -m venv "), command)
        tmp = os.path.abspath(self.mktemp())
        tree = os.path.join(tmp, "webrtcstack")
        shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "dist", "*.egg-info", "_trial_temp*", "__pycache__", ".hypothesis"))
        home = os.path.join(tmp, "home")
        os.makedirs(home)
        driver = os.path.join(tmp, "driver.py")
        with open(driver, "w") as f:
            f.write(DRIVER)
        env = {"PATH": "/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8", "PIP_NO_INDEX": "1",
               "PIP_FIND_LINKS": WHEELHOUSE, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        done = subprocess.run(["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                               SYSTEM_PYTHON, driver, command, tree], env=env, capture_output=True, text=True,
                              timeout=360)
        lines = done.stdout.strip().splitlines()
        self.assertTrue(lines, done.stderr[-3000:])
        report = json.loads(lines[-1])
        detail = "\n".join(report.get("output", []))
        self.assertEqual(report.get("status"), 200, detail)
        self.assertIn("<title>webrtcstack call</title>", report.get("page", ""), detail)
        # It really was the system python in the new virtual environment.
        with open(os.path.join(tree, ".venv", "pyvenv.cfg")) as f:
            venv = f.read()
        self.assertIn("home = /usr/bin", venv)
        self.assertNotIn(sys.prefix, venv)
