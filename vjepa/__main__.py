"""`python -m vjepa` (and `accelerate launch -m vjepa ...`) runs the CLI."""

import sys

from vjepa.cli import main

if __name__ == "__main__":
    sys.exit(main())
