"""The one thing pyproject.toml cannot say: the checkout's top-level ``conf/`` ships inside the package as
``trpo_lab.conf``, so that a wheel (``pip install .``) carries the Hydra configs. Everything else is in
pyproject.toml."""
from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["trpo_lab", "trpo_lab.*"]), "trpo_lab.conf"],
    package_dir={"trpo_lab.conf": "conf"},
)
