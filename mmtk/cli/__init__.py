"""The ``mmtk`` command line: a thin layer that parses options, calls one library
function and prints. One module per command; shared options in ``options.py``; the one
place that maps exceptions to exit codes is ``errors.py``."""
