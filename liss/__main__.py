import sys

from liss.cli import main

sys.exit(main())
