"""The accuracy protocol (conf/accuracy_protocol.yaml, docs/accuracy_protocol.md): selection on
validation only, the selected configuration with several seeds on test, baselines beside it.

    .venv/bin/python scripts/accuracy.py --dry-run
    .venv/bin/python scripts/accuracy.py --cell etth1:bilstm_hybrid:h1
    .venv/bin/python scripts/accuracy.py --list
"""

from __future__ import annotations

import sys

from lstm_forecast.cli.accuracy import main

if __name__ == "__main__":
    sys.exit(main())
