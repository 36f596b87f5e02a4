"""The console's browser for tests: `central.devtools.browser` (Debian's chromium)."""

from central.devtools.browser import chromium, login, wait_js

__all__ = ["chromium", "login", "wait_js"]
