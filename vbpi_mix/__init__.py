"""vbpi-mix: variational Bayesian phylogenetic inference with mixtures of SBNs.

The API, imported on first use (PEP 562) so that the command line starts without torch:

    from vbpi_mix import ModelConfig, Posterior, TrainingConfig, workflows
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {  # name: (module, attribute of it; None: the module itself)
    "workflows": ("vbpi_mix.workflows", None),
    "ModelConfig": ("vbpi_mix.inference.runs", "ModelConfig"),
    "TrainingConfig": ("vbpi_mix.inference.trainer", "TrainingConfig"),
    "Posterior": ("vbpi_mix.export.api", "Posterior"),
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'vbpi_mix' has no attribute {name!r}")
    module_name, attribute = _API[name]
    module = importlib.import_module(module_name)
    return module if attribute is None else getattr(module, attribute)
