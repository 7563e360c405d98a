import sys

from affectline.cli import main

sys.exit(main())
