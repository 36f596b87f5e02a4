"""The node's web page: live view, recordings, events and the alarm, for a phone.

A consumer at the end of the data flow, like `mqtt`: it never imports `firmware`; the
wiring (`firmware/wiring/web.py`) hands it a `web.node.Node` of callbacks. See docs/web.md.
"""
