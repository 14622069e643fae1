"""``python -m benchmarks SECTION [SECTION ...]``: see :mod:`benchmarks.run`."""

import sys

from benchmarks.run import main

sys.exit(main())
