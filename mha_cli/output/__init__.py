"""Output: the JSON documents, the rich tables, JUnit XML and --code scripts, rendered from results.

The only layer that imports rich (ruff's banned-api holds it to that).
"""

#: Piped or saved output is laid out for this many columns, unless COLUMNS or --width says otherwise.
PIPED_WIDTH = 120
#: --svg and --html pictures are laid out for this many columns, whatever the terminal.
EXPORT_WIDTH = 120
