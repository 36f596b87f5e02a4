"""`ronda dev-node`: a development tool, in `devtools/commands/devnode.py`.

Only launched from here (`firmware/tools.py`); a node's release does not have it.
"""

from firmware.tools import launcher

register = launcher("dev-node")
