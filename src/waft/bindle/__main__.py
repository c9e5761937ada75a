"""`python -m waft.bindle --address 127.0.0.1:8080 --directory DIR` runs the bindle server."""

import sys

from waft.bindle.serve import main

sys.exit(main())
