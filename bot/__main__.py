"""`python -m bot` is `kitchen-table`."""

import sys

from bot.app import main

sys.exit(main())
