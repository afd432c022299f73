"""The pure core: the shape grammar, configurations, the derivation, masks, summaries and case files.

Standard library only (tests/test_layers.py holds it to that): everything here
answers instantly, without Keras, NumPy or rich.
"""
