"""What `pip install -e .` installs: every room of the package, and the repo's callbacks/ folder as
`sqil_lightning.callbacks`, never as a top-level `callbacks` package (issue 22)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import tomllib
from fit_process import REPO


def test_every_package_folder_is_installed():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    folders = {".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "sqil_lightning").rglob("__init__.py")}
    assert folders - {"sqil_lightning.callbacks"} <= listed, f"package folders missing from pyproject.toml: {sorted(folders - listed)}"
    assert "sqil_lightning.callbacks" in listed and config["package-dir"] == {"sqil_lightning.callbacks": "callbacks"}


@pytest.mark.slow  # a worker process, a subprocess or a longer fit: seconds
def test_callbacks_import_as_sqil_lightning_callbacks_only(tmp_path):
    # From a folder outside the repo, as a user's project would: only the installed package is seen.
    probe = (
        "import importlib.util, sqil_lightning.callbacks as c; "
        "print(c.__file__); print(importlib.util.find_spec('callbacks'))"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    callbacks_file, top_level = done.stdout.split()
    assert callbacks_file == str(REPO / "callbacks" / "__init__.py")
    assert top_level == "None"  # `import callbacks` finds nothing
