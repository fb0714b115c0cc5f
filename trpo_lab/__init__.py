"""trpo-lab: NPG, TRPO and TRPO without line search as compositions of one natural-gradient update."""
from pathlib import Path


def _config_dir() -> Path:
    """The Hydra configs: ``trpo_lab/conf`` in an installed wheel, the checkout's top-level ``conf/`` otherwise
    (a checkout on the path, or an editable install, which maps the package ``trpo_lab.conf`` onto it)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"trpo-lab's configs (conf/train.yaml) are neither in {here} nor in {here.parent}")


#: the folder holding train.yaml and the config groups
CONFIG_DIR: Path = _config_dir()
