"""`python -m alti_lens ...` is the `alti-lens` command line."""

import sys

from .cli import main

sys.exit(main())
