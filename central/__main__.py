"""`/usr/bin/python3 -m central ...` entry point (see central/cli.py)."""

import sys

from central.cli import main

sys.exit(main())
