"""``python -m inspyrenet_lite``: the same as the ``inspyrenet-lite`` command."""

import sys

from inspyrenet_lite.cli import main

if __name__ == "__main__":
    sys.exit(main())
