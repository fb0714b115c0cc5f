"""Learning curves and a final-performance table: ``trpo_lab.reports.curves`` (see its docstring).

    python scripts/plot_curves.py SWEEP_DIR [SWEEP_DIR ...] --out experiments/NAME
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without `pip install -e .`

from trpo_lab.reports.curves import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
