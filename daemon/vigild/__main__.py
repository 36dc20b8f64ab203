import sys

from vigild.cli import main

sys.exit(main())
