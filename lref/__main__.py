import sys

from lref.cli import main

sys.exit(main())
