"""``python -m rldk.analyzers.bisect SPEC.json``: the script ``git bisect run`` calls at each commit."""
import sys

from rldk.analyzers.bisect.probe import main

sys.exit(main())
