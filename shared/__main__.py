"""`python -m shared ...` is `avgen ...` (Lightning re-executes this for DDP ranks)."""

from shared.commands import main

main()
