"""The command-line face of egoframe: thin typer commands over library functions."""
