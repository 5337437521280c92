"""`python -m core <verb> ...` — what the GUI runs as a background job."""

import sys

from core.cli import main

sys.exit(main())
