"""The library privates the project still relies on, each where and as it uses them: a library
upgrade that moves one fails here, by name, rather than somewhere deep in a fit.

Each use carries a comment naming the library version it was written against (issue 22, item 6).
"""

from __future__ import annotations

import inspect

from lightning.pytorch import Trainer
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.loops.evaluation_loop import _EvaluationLoop
from lightning.pytorch.trainer.connectors.logger_connector.logger_connector import _LoggerConnector
from torchrl.collectors import BaseCollector


def test_lightning_keeps_the_logging_clock_in_batches_that_stepped():
    # sqil_lightning.learners.base.OffPolicyLearner.training_step advances it with the updates.
    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    assert trainer.fit_loop.epoch_loop._batches_that_stepped == 0
    # The logger connector logs metrics at that step: it is the logging clock, not some other count.
    assert "epoch_loop._batches_that_stepped" in inspect.getsource(_LoggerConnector.log_metrics)


def test_lightning_optimizer_counts_a_step_through_its_private_hooks():
    # OffPolicyLearner._direct_update calls them around Adam's step, as LightningOptimizer.step does.
    source = inspect.getsource(LightningOptimizer.step)
    assert "self._on_before_step()" in source and "self._on_after_step()" in source


def test_lightning_prints_evaluation_results_through_print_results():
    # sqil_lightning.trainer_setup.round_printed_results wraps it on the validate and test loops.
    assert callable(_EvaluationLoop._print_results)
    assert "self._print_results(" in inspect.getsource(_EvaluationLoop)


def test_torchrl_keeps_apply_to_composite_where_pixels_imports_it():
    from torchrl.envs.transforms._base import _apply_to_composite  # sqil_lightning.envs.pixels

    assert callable(_apply_to_composite)


def test_torchrl_collectors_keep_their_weight_sync_schemes_in_one_attribute():
    # sqil_lightning.data.collectors.shutdown_collector closes the schemes a shutdown leaves open.
    assert "_weight_sync_schemes" in inspect.get_annotations(BaseCollector)


def test_wandb_prints_terminal_lines_through_term_log():
    # sqil_lightning.quiet.silence_wandb_noise filters the benign ones there.
    from wandb.errors import term

    assert callable(term._log)
    assert "_log(" in inspect.getsource(term.termwarn)
