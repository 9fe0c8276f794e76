"""The language-server daemon (`deepdive serve`). Import :func:`deepdive.daemon.server.serve` to run it."""
