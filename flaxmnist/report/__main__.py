"""``python -m flaxmnist.report DIR``: see ``flaxmnist.report.main``."""

import sys

from flaxmnist.report import main

sys.exit(main())
