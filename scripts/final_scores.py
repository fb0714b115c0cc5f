"""A study's per-run CSV and final-score table: ``trpo_lab.reports.final_scores`` (see its docstring).

    python scripts/final_scores.py SWEEP_DIR [SWEEP_DIR ...] --out experiments/NAME
    python scripts/final_scores.py experiments/NAME/runs.csv --out experiments/NAME            # tables rebuilt from the CSV
    python scripts/final_scores.py experiments/NAME/runs.csv NEW_SWEEP --out experiments/NAME  # the record plus new runs
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without `pip install -e .`

from trpo_lab.reports.final_scores import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
