"""Soft Q Imitation Learning (SQIL) on PyTorch Lightning and TorchRL."""

from sqil_lightning.bc_module import BehaviouralCloning
from sqil_lightning.datamodule import SQILDataModule
from sqil_lightning.demos import DemoSet
from sqil_lightning.gail_module import GAILSoftQ
from sqil_lightning.sac_module import SACSQIL
from sqil_lightning.soft_q_module import SoftQSQIL
from sqil_lightning.sqil_t_module import SoftQSQILT

__all__ = ["BehaviouralCloning", "DemoSet", "GAILSoftQ", "SACSQIL", "SQILDataModule", "SoftQSQIL", "SoftQSQILT"]
