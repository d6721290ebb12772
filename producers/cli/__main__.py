"""``python -m producers.cli``: the ``lantoa`` command (producers/cli/main.py)."""

import sys

from producers.cli.main import main

sys.exit(main())
