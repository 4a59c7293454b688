"""`python -m proxy` is the same as the `throttle-proxy` console script."""

import sys

from proxy.cli.main import main

sys.exit(main())
