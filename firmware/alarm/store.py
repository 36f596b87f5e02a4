"""Small JSON state files under the state dir, written so that a power cut or kill -9 leaves
either the old or the new content, never half of one (`support.files.atomic_write`).

The alarm keeps two: ``alarm.json`` (the active alarm, so that a restart can report the
interrupted one) and ``arm.json`` (the arm mode set by a remote command).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from support.files import atomic_write

log = logging.getLogger(__name__)


class JsonFile:
    """One small JSON document on disk, replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, Any] | None:
        """The stored document; None when absent or unreadable (a damaged file is logged)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("%s unreadable (%s); ignoring it", self.path, exc)
            return None
        return data if isinstance(data, dict) else None

    def save(self, data: dict[str, Any]) -> None:
        """Replace the document; durable when this returns."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps(data, sort_keys=True))

    def clear(self) -> None:
        """Remove the document (no error when already gone)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
            self._sync_dir()

    def _sync_dir(self) -> None:
        try:
            fd = os.open(self.path.parent, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)
