"""``python -m deepdive.protocol``: print or write the generated TypeScript (see :mod:`.typescript`)."""

import sys

from deepdive.protocol.typescript import main

sys.exit(main())
