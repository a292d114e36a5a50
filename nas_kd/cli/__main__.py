"""``python -m nas_kd.cli``: the same as ``nas-kd``."""
import sys

from nas_kd.cli import main

sys.exit(main())
