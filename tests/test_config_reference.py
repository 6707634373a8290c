"""README's config reference names every knob a user may turn: each argument of the data module,
the two SQIL learners and the config sections the CLI adds (a new knob without a row fails here)."""

from __future__ import annotations

import inspect
import re

import pytest

from fit_process import REPO
from sqil_lightning import SACSQIL, SoftQSQIL, SQILDataModule
from sqil_lightning.callbacks import Evaluation, FastPaths, FiniteLossGuard, PeriodicRollout
from sqil_lightning.data.pretraining import Pretraining
from sqil_lightning.wandb_logger import WandbSettings

# Set by the CLI, not by the user: from the env, and `data.pretrain_steps` from `pretrain.steps`.
LINKED = {"observation_shape", "action_space", "pretrain_steps"}


def readme_keys() -> set[str]:
    """The keys in the first column of README's tables: `a.b.c` or `a.b.c`, `d`, `e` (siblings of the first)."""
    keys = set()
    for line in (REPO / "README.md").read_text().splitlines():
        first = line.split("|")[1] if line.startswith("| `") else ""
        names = re.findall(r"`([\w.]+)`", first)
        if names:
            prefix = names[0].rpartition(".")[0]
            keys.update([names[0], *(f"{prefix}.{name}" for name in names[1:] if "." not in name)])
    return keys


def arguments(cls: type) -> list[str]:
    return [name for name in inspect.signature(cls.__init__).parameters if name not in {"self", *LINKED}]


@pytest.mark.parametrize(
    "section,cls",
    [
        ("data", SQILDataModule),
        ("model.init_args", SoftQSQIL),
        ("model.init_args", SACSQIL),
        ("pretrain", Pretraining),
        ("rollout", PeriodicRollout),
        ("evaluation", Evaluation),
        ("finite_loss", FiniteLossGuard),
        ("fast", FastPaths),
        ("wandb", WandbSettings),
    ],
    ids=lambda value: value if isinstance(value, str) else value.__name__,
)
def test_every_argument_has_a_row_in_the_readme(section, cls):
    documented = readme_keys()
    missing = [f"{section}.{name}" for name in arguments(cls) if f"{section}.{name}" not in documented]
    assert not missing, f"README's config reference lacks {missing}"
