"""``python -m mlgrad`` is the ``mlgrad`` command."""

from mlgrad.cli import console

console()
