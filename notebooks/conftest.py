"""The notebooks run by the test suite (nbmake) take their small budget: seconds each."""

import os

os.environ["CTC_NEWTON_NOTEBOOK_BUDGET"] = "small"
