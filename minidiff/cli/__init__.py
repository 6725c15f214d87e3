"""The command line, one module per command; `python -m minidiff <command>` dispatches to them (minidiff/__main__.py).
Nothing in the package imports the command line.
"""
