"""``python -m dagflow``: the same as the ``dagflow`` command."""

from ._cli import main

main()
