"""`ronda fleet-sim`: a development tool, in `devtools/commands/fleet.py`.

Only launched from here (`firmware/tools.py`); a node's release does not have it.
"""

from firmware.tools import launcher

register = launcher("fleet-sim")
