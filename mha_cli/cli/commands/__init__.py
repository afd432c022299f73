"""One module per command: parse, call one operation, render, exit."""
