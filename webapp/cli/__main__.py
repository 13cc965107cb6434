"""`python -m webapp.cli`: the same command as the `memory-admin` console script."""

from webapp.cli import main

main()
