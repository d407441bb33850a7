"""`python -m toolkit` is `tk`; torchrun and accelerate launch start it as `-m toolkit`."""

from toolkit.cli import main

main()
