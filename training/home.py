"""Where nnhil keeps what it makes: simulator and board builds, trained models, run history.

One directory the user chooses, never the package's own (nnhil works the same from a
checkout and from ``pip install``): ``$NNHIL_HOME``, which the pytest plugin's
``--nnhil-home`` sets, else the user's cache directory, ``$XDG_CACHE_HOME/nnhil``
(``~/.cache/nnhil``). Builds and trained models are keyed by what made them, so checkouts
and projects share them safely.
"""
import os
from pathlib import Path

ENV = "NNHIL_HOME"


def root():
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nnhil"


def builds():
    """Simulator, Arty, firmware and synthesis builds (``sim-<hash>/``, ``arty-<hash>/``)."""
    return root() / "build"


def out():
    """Trained models (``<dataset>-<arch>-<hash>/``), run history and board runs."""
    return root() / "out"
