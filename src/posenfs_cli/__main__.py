"""``python -m posenfs_cli`` (also what ``torchrun -m posenfs_cli`` runs)."""

from posenfs_cli.cli.app import main

main()
