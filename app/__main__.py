"""`python -m app [project]`: same as the `dfine-studio` script."""

import sys

from app.main import main

sys.exit(main())
