"""``python -m ctc_newton``: the command line."""

import sys

from ctc_newton.cli import main

sys.exit(main())
