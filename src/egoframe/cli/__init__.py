"""The command-line face of egoframe: thin typer commands over library functions.

The commands import the workflows and parts they run inside their functions, on purpose, so that ``egoframe --help``
starts fast (tests/test_layers.py exempts the faces from the ``# lazy:`` rule for in-function imports).
"""
