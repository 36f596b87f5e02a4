"""systemd's notify protocol: READY=1, STATUS=, WATCHDOG=1, STOPPING=1.

Uses systemd-python (`systemd.daemon.notify`) when installed, else writes the same
datagram to $NOTIFY_SOCKET itself. Outside systemd both are silent no-ops.
"""

from __future__ import annotations

import os
import socket

try:
    from systemd import daemon as _sd
except ImportError:  # systemd-python is optional (the `systemd` extra)
    _sd = None


def notify(state: str) -> bool:
    """Send `state` (e.g. "READY=1\\nSTATUS=ok") to systemd; False when not under systemd."""
    if _sd is not None:
        return bool(_sd.notify(state))
    return _notify_socket(state)


def _notify_socket(state: str) -> bool:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):  # abstract namespace
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(state.encode(), addr)
        except OSError:
            return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None if not asked for."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2e6, 0.05)
    except ValueError:
        return None
