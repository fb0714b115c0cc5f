from __future__ import annotations

import os

import pytest
import torch

from helpers import CONF_DIR

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(1)


@pytest.fixture
def compose():
    """compose(overrides) -> DictConfig of conf/train.yaml, via Hydra's compose API."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    def _compose(overrides=(), config_name="train", return_hydra_config=False):
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return hydra_compose(config_name, overrides=list(overrides), return_hydra_config=return_hydra_config)

    return _compose
