import sys

from nas_kd.cli import main

sys.exit(main())
