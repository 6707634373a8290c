"""What can be wrong with demos: each error names the file (or source) and the key."""

from sqil_lightning.errors import UserInputError


class DemoError(UserInputError):
    """Base class of every demo problem a user can fix; the CLI prints it as one line."""


class DemoFileNotFoundError(DemoError):
    """The demo file does not exist."""


class DemoFormatError(DemoError):
    """The file is not a valid demo file of this project's format."""


class DemoSpecMismatchError(DemoError):
    """The demos do not fit the environment's observation or action space."""
