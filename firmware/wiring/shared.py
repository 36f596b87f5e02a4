"""`Shared`: the objects one area offers the areas built after it, by name and type.

A typed object instead of a dict: a misspelt name is an `AttributeError` (or a `KeyError`
naming the known ones) at the line that misspells it, never a silent default such as
"always armed". A consumer says whether it can do without a service:

- ``ctx.shared.cameras`` reads an optional one (``None`` when its area is switched off or
  failed to start; the consumer has a fallback and says so in a comment);
- ``ctx.shared.need("cameras")`` is a service the area cannot work without, offered by an
  area built *before* it: missing, the area fails to start with a `MissingProvider` error;
- ``ctx.shared.later("armed")`` is one offered by an area built *after* it: it returns a
  callable that gives the service when called, and `build_all` checks, once every area is
  built, that someone offered it; if not, the consumer's area is recorded as failed
  (`ctx.faults`) and does not run.

Mapping access (``shared["cameras"]``, ``shared.get("cameras")``, ``"mqtt" in shared``)
stays for the existing callers; it refuses unknown names too.

>>> shared = Shared()
>>> shared["armed"] = lambda now=None: False
>>> shared.armed()
False
>>> shared.get("snapshot") is None
True
>>> shared.get("armd")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
KeyError: "no shared service 'armd' (known: alarm, armed, cameras, ...)"
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # types only: importing them here would import every area
    from drivers.cameras.registry import CameraRegistry
    from firmware.alarm.controller import AlarmController
    from firmware.wiring.mqtt import MqttBridge


class SnapshotFn(Protocol):
    """A JPEG of the camera now, or None."""

    def __call__(self, camera: str, timeout: float = 3.0) -> bytes | None: ...


class ArmedFn(Protocol):
    """Whether alerts are armed at `now` (wall clock; None: now)."""

    def __call__(self, now: float | None = None) -> bool: ...


class Protector(Protocol):
    """Keeps footage of `cameras` (all when empty) between `start` and `end` for an event."""

    def protect(self, event_id: str, start: float, end: float,
                cameras: tuple[str, ...] = ()) -> Any: ...


# Which area offers each service (for the error messages).
PROVIDERS = {
    "cameras": "cameras", "snapshot": "cameras", "recorder": "recorder",
    "armed": "alarm", "alarm": "alarm", "mqtt": "mqtt", "mqtt_connected": "mqtt",
    "config_rejected": "daemon", "gpio_candidates": "daemon",
    "gpio_source": "alarm", "gpio_error": "alarm", "uplink": "uplink", "web": "web",
}


class MissingProvider(RuntimeError):
    """An area needs a service that no area offered."""

    def __init__(self, name: str, consumer: str = "") -> None:
        who = f"the {consumer} area" if consumer else "this area"
        super().__init__(f"{who} needs the shared service {name!r}, offered by the "
                         f"{PROVIDERS.get(name, '?')} area, which did not offer it "
                         f"(switched off or failed to start)")
        self.name = name
        self.consumer = consumer


@dataclass(slots=True)
class Shared:
    """The services areas offer each other; see the module's docstring for the rules."""

    cameras: CameraRegistry | None = None  # cameras: get(name).main/.detect, report_*
    snapshot: SnapshotFn | None = None  # cameras (detection may put a faster one)
    recorder: Protector | None = None  # recorder: protect(event_id, start, end, cameras)
    armed: ArmedFn | None = None  # alarm: mode and schedule
    alarm: AlarmController | None = None  # alarm: the controller (state, outputs)
    mqtt: MqttBridge | None = None  # mqtt: the bridge; .link.connected
    mqtt_connected: Callable[[], bool] | None = None  # a probe that overrides mqtt.link
    config_rejected: str | None = None  # daemon: why ronda.toml was refused (safe mode)
    # daemon: in safe mode, every valid [gpio] found, (where, settings), in order of trust
    gpio_candidates: list[tuple[str, Any]] | None = None
    gpio_source: str | None = None  # alarm: which of them the panel opened with
    gpio_error: str | None = None  # alarm: why the panel has no pins ("" or None: it has)
    uplink: Any = None  # uplink: the `uplink.service.Uplink` (live pushes, fetch queue)
    web: Any = None  # web: the page (`web.app.Web`): sessions, live relays
    # (consumer area, name) pairs asked for with `later`, checked by `unmet`
    _later: list[tuple[str, str]] = field(default_factory=list, repr=False)

    # -- requirements ------------------------------------------------------------------
    def need(self, name: str, consumer: str = "") -> Any:
        """The service `name`, which an area built before this one must have offered."""
        value = self.get(name)
        if value is None:
            raise MissingProvider(self._check(name), consumer)
        return value

    def later(self, name: str, consumer: str = "") -> Callable[[], Any]:
        """A getter for the service `name`, offered by an area built after this one; that
        it was offered is checked once every area is built (`unmet`)."""
        self._check(name)
        self._later.append((consumer, name))

        def get() -> Any:
            value = getattr(self, name)
            if value is None:
                raise MissingProvider(name, consumer)
            return value
        return get

    def unmet(self) -> list[tuple[str, str]]:
        """(consumer area, name) of every `later` requirement that nobody offered."""
        return [(consumer, name) for consumer, name in self._later
                if getattr(self, name) is None]

    # -- mapping access (existing callers) ---------------------------------------------
    def __getitem__(self, name: str) -> Any:
        value = getattr(self, self._check(name))
        if value is None:
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value: Any) -> None:
        setattr(self, self._check(name), value)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in PROVIDERS and getattr(self, name) is not None

    def get(self, name: str, default: Any = None) -> Any:
        value = getattr(self, self._check(name))
        return default if value is None else value

    @staticmethod
    def _check(name: str) -> str:
        if name not in PROVIDERS:
            raise KeyError(f"no shared service {name!r} (known: {', '.join(sorted(PROVIDERS))})")
        return name

    @classmethod
    def of(cls, value: Shared | dict[str, Any] | None) -> Shared:
        """`value` as a `Shared` (a dict's keys must be service names)."""
        if isinstance(value, Shared):
            return value
        shared = cls()
        for name, service in (value or {}).items():
            shared[name] = service
        return shared

