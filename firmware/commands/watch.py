"""`ronda watch`: a Command Center tool, in `central/tools/watch.py`.

Only launched from here (`firmware/tools.py`); a node's release does not have it.
"""

from firmware.tools import launcher

register = launcher("watch")
