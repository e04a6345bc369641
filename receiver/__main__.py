"""``python -m receiver`` is the ``remediator`` command."""

from receiver.cli import main

main()
