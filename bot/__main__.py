"""`python -m bot` is `kitchen-table`."""

import sys

from bot.app.cli import main

sys.exit(main())
