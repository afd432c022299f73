"""Output: the JSON documents, the rich tables, JUnit XML and --code scripts, rendered from results.

The only layer that imports rich (ruff's banned-api holds it to that).
"""
