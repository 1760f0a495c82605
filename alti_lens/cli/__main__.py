"""`python -m alti_lens.cli ...` is the `alti-lens` command line."""

import sys

from . import main

sys.exit(main())
