"""The runtime: the only code that imports Keras or NumPy (the adapter, native-output silencing, arrays).

It imports the core and nothing above it; heavy imports stay inside functions.
"""
