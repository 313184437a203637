"""``python -m lrl_pipeline.cli``: the ``lrl`` command without its console script."""
import sys

from lrl_pipeline.cli.main import main

sys.exit(main())
