"""``python -m nnhil``: the ``nnhil`` command line."""
import sys

from nnhil.host.cli import main

sys.exit(main())
