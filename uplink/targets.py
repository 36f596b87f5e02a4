"""Checking where video may go before anything is sent.

An upload URL comes inside a command, so it is checked like any input from outside:
http(s) only, a host that resolves, and none of its addresses on this node, loopback,
a private or link-local network (a `fetch` must not become a way to PUT footage onto
the RW's own LAN), unless `allow_lan`. The connection is then made to the address that
was checked (`Target.addresses`), not to a second lookup, so a DNS answer that changes
between check and use cannot point it elsewhere.

>>> try:
...     check_upload_url("file:///etc/passwd")
... except Refused as exc:
...     print(exc)
upload_url must be http:// or https://, not 'file'
>>> public("https://bucket.example/clip.mp4?X-Amz-Signature=abc")
'https://bucket.example/clip.mp4'
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(ValueError):
    """The URL may not be used; the message says why (for the command's reply)."""


@dataclass(frozen=True)
class Target:
    """A checked upload URL."""

    url: str
    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent in the request line
    addresses: tuple[str, ...]  # the checked addresses, to connect to


def public(url: str) -> str:
    """`url` without credentials and query (a presigned URL's query is its secret)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def own_addresses() -> set[str]:
    """Every address of this node's interfaces."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dependency
        return set()
    found = set()
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                found.add(a.address.split("%")[0])
    return found


def local_reason(address: str, own: Iterable[str]) -> str:
    """Why `address` counts as the node itself or its LAN, or '' if it does not."""
    ip: Address = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if str(ip) in own:
        return "this node"
    if ip.is_loopback or ip.is_unspecified:
        return "this node (loopback)"
    if ip.is_link_local:
        return "a link-local network"
    if ip.is_private or ip in ipaddress.ip_network("100.64.0.0/10"):
        return "a private network"
    if ip.is_multicast or ip.is_reserved:
        return "a multicast or reserved address"
    return ""


Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_host(host: str, port: int, *, allow_lan: bool, what: str,
               resolver: Resolver = resolve,
               own: Callable[[], set[str]] = own_addresses) -> tuple[str, ...]:
    """The addresses of `host`, all checked; `Refused` when one is not allowed."""
    try:
        addresses = resolver(host, port)
    except (OSError, UnicodeError) as exc:
        raise Refused(f"{what} host {host!r} does not resolve: {exc}") from None
    if not addresses:
        raise Refused(f"{what} host {host!r} does not resolve")
    if not allow_lan:
        mine = own()
        for address in addresses:
            why = local_reason(address, mine)
            if why:
                raise Refused(f"{what} {host!r} resolves to {address}, {why}; refused "
                              "(set [uplink] allow_lan = true to allow)")
    return tuple(addresses)


def check_upload_url(url: str, *, allow_lan: bool = False, resolver: Resolver = resolve,
                     own: Callable[[], set[str]] = own_addresses) -> Target:
    """Check an upload URL from a command; `Refused` says why it cannot be used."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused(f"upload_url is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise Refused(f"upload_url must be http:// or https://, not {scheme or 'no scheme'!r}")
    host = parts.hostname
    if not host:
        raise Refused("upload_url has no host")
    if parts.username or parts.password:
        raise Refused("upload_url must not carry a user or password (use a presigned URL)")
    port = port or (443 if scheme == "https" else 80)
    addresses = check_host(host, port, allow_lan=allow_lan, what="upload_url",
                           resolver=resolver, own=own)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(url, scheme, host, port, path, addresses)
