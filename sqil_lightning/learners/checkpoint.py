"""A trained learner from its checkpoint file: the one way other rooms reach a checkpoint's policy."""

from __future__ import annotations

from pathlib import Path

from sqil_lightning.checkpoint_io import read_checkpoint
from sqil_lightning.errors import UserInputError
from sqil_lightning.learners.base import OffPolicyLearner, learner_classes

# Where each learner module lived before the package moved into rooms (issue 22): checkpoints
# written then name their learner class as e.g. ``sqil_lightning.soft_q_module.SoftQSQIL``.
FORMER_MODULES = {
    "sqil_lightning.soft_q_module": "sqil_lightning.learners.soft_q",
    "sqil_lightning.sac_module": "sqil_lightning.learners.sac",
    "sqil_lightning.sqil_t_module": "sqil_lightning.learners.sqil_t",
    "sqil_lightning.gail_module": "sqil_lightning.learners.gail",
    "sqil_lightning.bc_module": "sqil_lightning.learners.bc",
}


def learner_class(name: str) -> type[OffPolicyLearner] | None:
    """The learner class a checkpoint names (``module.QualName``, today's or a former module's)."""
    module, _, qualname = name.rpartition(".")
    return learner_classes().get(f"{FORMER_MODULES.get(module, module)}.{qualname}")


def load_learner(checkpoint: str | Path) -> tuple[OffPolicyLearner, str]:
    """The learner saved in a sqil_lightning checkpoint, on the CPU in eval mode, and the env id it
    trained on.

    The file is read with ``weights_only=True`` (`read_checkpoint`): it never runs code, and the
    class it names is looked up among the loaded learner classes, never imported.
    """
    path = Path(checkpoint)
    saved = read_checkpoint(path, role="expert checkpoint")
    class_name = saved.get("sqil_learner_class")
    env_id = saved.get("datamodule_hyper_parameters", {}).get("env_id")
    if class_name is None or env_id is None:
        raise UserInputError(f"{path} is not a sqil_lightning checkpoint (it names no learner class or env id)")
    found = learner_class(class_name)
    if found is None:
        raise UserInputError(f"{path} names the learner class {class_name!r}, which is not one of sqil_lightning's {sorted(learner_classes())}")
    learner = found.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    return learner.eval(), env_id
