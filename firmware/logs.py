"""Logging: journald under systemd, stderr elsewhere."""

from __future__ import annotations

import logging
import os
import sys
from typing import ClassVar


class JournalPrefix(logging.Formatter):
    """Prefixes each line with its syslog priority, e.g. "<4>" for a warning."""

    PRIORITY: ClassVar[dict[int, int]] = {
        logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
        logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        prio = self.PRIORITY.get(record.levelno, 6)
        return "\n".join(f"<{prio}>{line}" for line in super().format(record).splitlines())


def setup(level: str = "info") -> None:
    """Configure the root logger once for the process."""
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(level.upper())
    handler: logging.Handler | None = None
    if os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"):
        try:
            from systemd.journal import JournalHandler

            handler = JournalHandler(SYSLOG_IDENTIFIER="ronda")
            handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        except ImportError:
            handler = None
    if handler is None and os.environ.get("JOURNAL_STREAM"):
        # stderr is the journal but systemd-python is missing: a "<N>" prefix still gives
        # each line its priority (journalctl -p warning), as sd-daemon(3) describes
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JournalPrefix("%(name)s: %(message)s"))
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    root.addHandler(handler)
