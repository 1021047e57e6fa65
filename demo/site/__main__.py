"""``python -m demo.site``: run the demo e-service."""

from __future__ import annotations

import sys

from demo.site.server import main

sys.exit(main())
