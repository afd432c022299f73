"""mha-explain: explain Keras MultiHeadAttention shapes from a real forward pass.

Importing this package is cheap: Keras and TensorFlow are imported only by
:mod:`mha_cli.runtime.keras_adapter`, and only when a forward pass runs.
"""

__version__ = "0.2.0"
