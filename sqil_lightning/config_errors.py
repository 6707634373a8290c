"""Config mistakes as one line: unreadable config files, YAML syntax, unknown keys with the nearest valid one."""

from __future__ import annotations

import argparse
import difflib
import inspect
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from sqil_lightning.errors import ConfigError
from sqil_lightning.learners.base import learner_classes

HELP_HINT = "python -m sqil_lightning fit --help lists every key"


def check_config_files(argv: Sequence[str]) -> None:
    """Every ``--config FILE`` that exists is UTF-8 text and valid YAML; else a `ConfigError`
    naming the file (and the line of a syntax error). Missing files are left to the parser."""
    for flag, value in zip(argv, argv[1:]):
        path = Path(value)
        if flag != "--config" or not path.is_file():
            continue
        try:
            yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"config file {path} is not text (expected a UTF-8 YAML file such as conf/lunarlander.yaml)") from None
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ConfigError(f"config file {path}: YAML syntax error{where}: {problem}") from None


def parser_error_line(err: argparse.ArgumentError, sections: Mapping[str, type]) -> str:
    """jsonargparse's nested message cut to the key the user typed and the innermost reason.

    A wrong value inside the model section reads `Parser key "model": … Parser key "lr": Expected
    a <class 'float'>. Got value: abc`; the user typed `model.lr`, so that is what we name. An
    unknown key names the nearest valid one of its section's class (``sections``: the class
    behind each config section; the model's comes from the message).
    """
    text = str(err)
    unknown = _unknown_key_line(text, sections)
    if unknown is not None:
        return unknown
    keys = re.findall(r'Parser key "([^"]+)":\s*(.*)', text)
    if not keys:
        return f"{text.splitlines()[0]} ({HELP_HINT})"
    name = ".".join(key for key, _ in keys)
    reason = re.sub(r"<class '(\w+)'>", r"\1", keys[-1][1])  # "Expected a <class 'float'>" → "Expected a float"
    reason = reason.replace("Expected a int", "Expected an int")
    return f"{name}: {reason} ({HELP_HINT})"


def _unknown_key_line(text: str, sections: Mapping[str, type]) -> str | None:
    model = re.search(r"Problem with given class_path '([\w.]+)':\s*Option '(\w+)' is not accepted", text)
    if model is not None:
        class_path, option = model.groups()
        candidates = _init_arguments(_model_class(class_path))
        return _did_you_mean(f"model.init_args.{option}", f"an argument of {class_path}", "model.init_args.", option, candidates)
    # The same mistake reads differently from a config file and from the command line.
    group = (
        re.search(r"Group '(\w+)' does not accept option '(\w+)'", text)
        or re.search(r"does not accept option '(\w+)\.(\w+)'", text)
        or re.search(r"unrecognized arguments: --(\w+)\.(\w+)", text)
    )
    if group is not None and group.group(1) in sections:
        section, option = group.groups()
        candidates = _init_arguments(sections[section])
        return _did_you_mean(f"{section}.{option}", f"a key of {section}", f"{section}.", option, candidates)
    return None


def _did_you_mean(key: str, what: str, prefix: str, option: str, candidates: list[str]) -> str:
    nearest = difflib.get_close_matches(option, candidates, n=1)
    hint = f"; did you mean {prefix}{nearest[0]}?" if nearest else ""
    return f"{key} is not {what}{hint} ({HELP_HINT})"


def _model_class(class_path: str) -> type | None:
    # Looked up among the learners, never imported: the name comes from the user's config.
    learners = learner_classes()
    by_name = {cls.__qualname__: cls for cls in learners.values()}   # as configs spell it: sqil_lightning.SoftQSQIL
    return learners.get(class_path) or by_name.get(class_path.rsplit(".", 1)[-1])


def _init_arguments(cls: type | None) -> list[str]:
    if cls is None:
        return []
    parameters = inspect.signature(cls.__init__).parameters.values()
    return [p.name for p in parameters if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
