"""``python -m mobilenets`` runs the command line."""

import sys

from mobilenets.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
