"""`python -m shared ...` is `avgen ...` (Lightning re-executes this for DDP ranks)."""

from shared.cli import main

main()
