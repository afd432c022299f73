import os

import pytest
from hypothesis import settings

# Tests of the pytest plugin run pytest inside pytest.
pytest_plugins = ["pytester"]

# Case files the README's examples run, some failing on purpose: not collected as tests.
collect_ignore = ["readme_files"]

# Keras binds its backend at import; the real-layer tests run on TensorFlow.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

settings.register_profile("default", deadline=None)
settings.load_profile("default")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite tests/golden/*.out from the current output (review the diff)",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))
