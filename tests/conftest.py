import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# Property tests: a few examples each in the default run (CI's time budget);
# HYPOTHESIS_PROFILE=thorough runs many more. No deadline: tests never time things, and
# a first example that traces a graph on a busy 2-core machine can take seconds.
settings.register_profile("default", max_examples=4, deadline=None)
settings.register_profile("thorough", max_examples=60, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
