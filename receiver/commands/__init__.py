"""The ``remediator`` subcommands, grouped by what they act on, each module registered on the
``main`` group in :mod:`receiver.cli`. Heavy modules are imported inside the commands."""
