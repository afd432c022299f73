"""Operations: one module per thing the tool does, each returning a frozen result.

explain, compare, picture, check, record, backends. They import the core and
the runtime, never the output or the CLI: nothing here prints.
"""
