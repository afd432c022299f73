import os

from hypothesis import settings

# Tests of the pytest plugin run pytest inside pytest.
pytest_plugins = ["pytester"]

# Keras binds its backend at import; the real-layer tests run on TensorFlow.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

settings.register_profile("default", deadline=None)
settings.load_profile("default")
