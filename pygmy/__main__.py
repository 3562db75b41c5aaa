"""`python -m pygmy` is the `pygmy` command."""

from pygmy.cli import main

main()
