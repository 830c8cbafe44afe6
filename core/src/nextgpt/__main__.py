"""``python -m nextgpt``: the ``nextgpt`` command."""

import sys

from nextgpt.cli import main

if __name__ == "__main__":
    sys.exit(main())
