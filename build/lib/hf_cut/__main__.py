"""`python -m hf_cut …`: the `hf-cut` command."""

import sys

from .cli import main

sys.exit(main())
