"""``python -m ctc_newton``: the command line (``ctc_newton_cli``)."""

import sys

from ctc_newton_cli import main

sys.exit(main())
