"""Log output: twisted.logger text by default, or one JSON object a line.

``[stack] log_format = json`` (or ``twistd webrtcstack --log-format json``)
makes the stack install :func:`json_observer` as the application's log
observer, which twistd then uses instead of its text one.  The same factory
works with twistd's own option: ``twistd --logger webrtcstack.ops.logs.json_observer``.

Each line has ``time`` (UTC, ISO 8601), ``level``, ``namespace``, ``message``
(the formatted text) and ``traceback`` when a failure is attached.
"""

from __future__ import annotations

import datetime
import json
import sys
from typing import IO, Any

from twisted.logger import ILogObserver, formatEvent
from zope.interface import provider


def event_as_dict(event: dict[str, Any]) -> dict[str, Any]:
    """The JSON record of one log event."""
    when = event.get("log_time")
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": datetime.datetime.fromtimestamp(when, datetime.timezone.utc).isoformat(timespec="milliseconds")
        if when is not None else None,
        "level": getattr(level, "name", "info"),
        "namespace": event.get("log_namespace", ""),
        "message": formatEvent(event),
    }
    failure = event.get("log_failure")
    if failure is not None:
        try:
            record["traceback"] = failure.getTraceback()
        except Exception:  # pragma: no cover - a broken failure must not break logging
            record["traceback"] = repr(failure)
    return record


def json_observer(out: IO[str] | None = None) -> ILogObserver:
    """A log observer writing one JSON object per event to ``out`` (default: stdout as it is now).

    The stream is fixed when the observer is made: twistd later replaces
    ``sys.stdout`` with a file that logs, and writing log lines there would loop.
    """
    target = out if out is not None else sys.stdout

    @provider(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        try:
            target.write(json.dumps(event_as_dict(event), default=repr) + "\n")
            target.flush()
        except (OSError, ValueError):  # pragma: no cover - a closed stdout at exit
            pass

    return observe
