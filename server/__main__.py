import sys

from deepdive.cli import main

sys.exit(main())
