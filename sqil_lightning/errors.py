"""Errors a user can fix; the CLI prints them as one line instead of a traceback."""


class UserInputError(ValueError):
    """Base class of mistakes in configs, command lines and input files."""


class ConfigError(UserInputError):
    """A config value is out of its valid range or inconsistent with another."""
