"""``python -m bedrock_trace.standin``: serve the stand-in until interrupted."""

import sys

from bedrock_trace.standin._cli import main

sys.exit(main())
