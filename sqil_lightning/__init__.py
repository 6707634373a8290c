"""Soft Q Imitation Learning (SQIL) on PyTorch Lightning and TorchRL."""

from sqil_lightning.datamodule import SQILDataModule
from sqil_lightning.demos import DemoSet
from sqil_lightning.sac_module import SACSQIL
from sqil_lightning.soft_q_module import SoftQSQIL

__all__ = ["DemoSet", "SACSQIL", "SQILDataModule", "SoftQSQIL"]
