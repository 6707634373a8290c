"""Soft Q Imitation Learning (SQIL) on PyTorch Lightning and TorchRL."""

from sqil_lightning.data.datamodule import SQILDataModule
from sqil_lightning.demos.store import DemoSet
from sqil_lightning.learners.bc import BehaviouralCloning
from sqil_lightning.learners.gail import GAILSoftQ
from sqil_lightning.learners.sac import SACSQIL
from sqil_lightning.learners.soft_q import SoftQSQIL
from sqil_lightning.learners.sqil_t import SoftQSQILT

__all__ = ["BehaviouralCloning", "DemoSet", "GAILSoftQ", "SACSQIL", "SQILDataModule", "SoftQSQIL", "SoftQSQILT"]
