"""Where a run's demos come from: a demo file, made on first use by an expert or from a Minari dataset."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqil_lightning.demos.experts import (
    EXPERTS,
    TRAIN_EXPERT_HINT,
    expert_env_id,
    generate_expert_demos,
    is_checkpoint,
    record_checkpoint_demos,
)
from sqil_lightning.demos.minari_datasets import load_minari_demos
from sqil_lightning.demos.store import DemoFileNotFoundError, DemoSet
from sqil_lightning.envs.pixels import PixelPipeline
from sqil_lightning.envs.spaces import EnvSpaces
from sqil_lightning.errors import ConfigError

log = logging.getLogger(__name__)


def demo_sources_help(env_id: str) -> str:
    """The ways a user can get demos, for error messages."""
    return (
        "Ways to get demos: (1) data.demo_path: an existing .npz demo file; "
        f"(2) data.demo_expert: a built-in expert ({', '.join(sorted(EXPERTS))}) or an expert checkpoint (*.ckpt) "
        f"that records the demo file on first use ({TRAIN_EXPERT_HINT}); "
        "(3) write a demo file with `python -m sqil_lightning demos generate --expert NAME --out FILE.npz` "
        "or `python -m sqil_lightning demos record --checkpoint CKPT --episodes N --out FILE.npz`; "
        "(4) data.demo_minari: a local Minari dataset id or folder (pip install -e \".[minari]\")."
    )


@dataclass(frozen=True)
class DemoSource:
    """The ``data.demo_*`` settings of a run (see `SQILDataModule`): which file, and what makes it
    when it is missing."""

    env_id: str
    spaces: EnvSpaces
    pixels: PixelPipeline | None
    path: str | None
    expert: str | None
    minari: str | None
    episodes: int
    seed: int
    success_only: bool

    def check(self) -> None:
        """Refuse settings that name two makers of the file, or no way to get demos at all."""
        if self.expert is not None and self.minari is not None:
            raise ConfigError("set at most one of data.demo_expert and data.demo_minari: both would make the demo file")
        if self.path is None and self.expert is None and self.minari is None:
            raise ConfigError(f"data.reward = sqil needs demos. {demo_sources_help(self.env_id)}")

    @property
    def file(self) -> Path:
        """``data.demo_path``, or by default ``demos/<env_id>_<source>_<episodes>ep[_success]_seed<seed>.npz``."""
        if self.path is not None:
            return Path(self.path)
        source = self.expert if self.expert is not None else f"minari-{self.minari}"
        # A checkpoint or dataset path becomes one file-name-safe token.
        token = Path(source).with_suffix("").as_posix().strip("./").replace("/", "-")
        outcome = "_success" if self.success_only else ""
        return Path("demos") / f"{self.env_id}_{token}_{self.episodes}ep{outcome}_seed{self.seed}.npz"

    def load(self) -> DemoSet:
        """The demo file, made first if missing, checked against the env."""
        path = self.file
        if not path.exists():
            self._make(path)
        demos = DemoSet.load(path)
        demos.check_against(self.spaces, self.env_id, source=f"demo file {path}")
        return demos

    def _make(self, path: Path) -> None:
        if self.minari is not None:
            log.info("converting Minari dataset %s into %s", self.minari, path)
            demos = load_minari_demos(self.minari)
            demos.check_against(self.spaces, self.env_id, source=f"Minari dataset {self.minari}")
            demos.save(path)
        elif self.expert is not None and is_checkpoint(self.expert):
            log.info("recording %d episodes of %s into %s", self.episodes, self.expert, path)
            record_checkpoint_demos(
                self.expert, self.episodes, self.seed, path, expected_env_id=self.env_id, pixels=self.pixels, success_only=self.success_only
            )
        elif self.expert is not None:
            # Checked here, not in `check`, so a model/env mismatch (the likelier mistake) is reported first.
            if expert_env_id(self.expert) != self.env_id:
                raise ConfigError(f"data.demo_expert = {self.expert!r} acts in {expert_env_id(self.expert)}, not data.env_id = {self.env_id!r}")
            log.info("generating %d %s demo episodes into %s", self.episodes, self.expert, path)
            generate_expert_demos(self.expert, self.episodes, self.seed, path, pixels=self.pixels, success_only=self.success_only)
        else:
            raise DemoFileNotFoundError(f"data.demo_path = {path} does not exist. {demo_sources_help(self.env_id)}")
