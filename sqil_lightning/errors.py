"""Errors meant for the user; the CLI prints them as one line instead of a traceback."""


class UserInputError(ValueError):
    """Base class of mistakes in configs, command lines and input files."""


class ConfigError(UserInputError):
    """A config value is out of its valid range or inconsistent with another."""


class TrainingDivergedError(RuntimeError):
    """A loss became NaN or infinite; the message names the step, the term and the saved checkpoint."""


class TrainingStopped(RuntimeError):
    """The user stopped the run (Ctrl+C); a checkpoint to resume from was written."""


class WriteFault(RuntimeError):
    """A file of the run could not be written (disk full, read-only folder); the message names the
    folder and what to do. Checkpoints already written are kept."""
