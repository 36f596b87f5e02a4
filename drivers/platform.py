"""Platform sensors: CPU, memory, SoC temperature, Raspberry Pi power flags, clock sync.

Every reader returns None where the board has no such sensor, never raises.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import psutil

THERMAL = Path("/sys/class/thermal")
# `vcgencmd get_throttled` bits (Raspberry Pi firmware docs).
THROTTLE_BITS = {
    0: "under_voltage", 1: "freq_capped", 2: "throttled", 3: "soft_temp_limit",
    16: "under_voltage_since_boot", 17: "freq_capped_since_boot",
    18: "throttled_since_boot", 19: "soft_temp_limit_since_boot",
}


def cpu_percent() -> float:
    """System-wide CPU use since the previous call, in percent."""
    return psutil.cpu_percent(interval=None)


def memory() -> dict[str, int]:
    vm = psutil.virtual_memory()
    return {"total": vm.total, "available": vm.available}


def temperature_c() -> float | None:
    """The hottest thermal zone (SoC on a Pi or Jetson)."""
    temps = []
    for zone in THERMAL.glob("thermal_zone*/temp"):
        try:
            temps.append(int(zone.read_text().strip()) / 1000)
        except (OSError, ValueError):
            continue
    return max(temps) if temps else None


def decode_throttled(value: int) -> list[str]:
    return [name for bit, name in THROTTLE_BITS.items() if value & (1 << bit)]


def throttled() -> list[str] | None:
    """Raspberry Pi power/thermal flags, or None when `vcgencmd` is absent."""
    if shutil.which("vcgencmd") is None:
        return None
    try:
        out = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True,
                             timeout=2).stdout
        return decode_throttled(int(out.strip().split("=")[1], 16))
    except (OSError, IndexError, ValueError, subprocess.TimeoutExpired):
        return None


def clock_synced() -> bool | None:
    """True when the kernel says the clock is NTP-synchronised (adjtimex), False when it
    says not, None when it cannot say (no adjtimex, or the call failed: a seccomp filter
    such as systemd's ProtectClock=, EPERM...). A failed call is never "synchronised"."""
    try:
        import ctypes

        class Timex(ctypes.Structure):
            _fields_ = [("modes", ctypes.c_uint), ("pad", ctypes.c_long * 64)]

        libc = ctypes.CDLL(None, use_errno=True)
        state = libc.adjtimex(ctypes.byref(Timex()))
    except (OSError, AttributeError):
        return None
    if state < 0:  # -1 and errno: the kernel did not answer
        return None
    return state != 5  # TIME_ERROR: clock not synchronised
