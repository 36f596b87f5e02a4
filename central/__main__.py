"""`python -m central` is `ronda-central`."""

import sys

from central.cli import main

sys.exit(main())
