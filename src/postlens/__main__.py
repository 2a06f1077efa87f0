"""``python -m postlens`` runs the command line."""

from postlens.cli import main

main()
