"""Every option of ``nnhil`` and of its pytest plugin, each declared once.

A concern (where the SoC runs, which images, which dataset, where a run's outputs go) is a
frozen dataclass; a field is one option, and its metadata (:func:`option`) carries the help,
the choices and the environment variable that stands in for it. From that one declaration:

- :func:`add_arguments` declares a concern's ``--field-name`` options on an argparse parser
  (``host/cli.py``), and :func:`from_namespace` reads the parsed values back into the dataclass;
- :func:`add_pytest_options` declares them on pytest's parser, prefixed (the plugin's
  ``--nnhil-field-name`` and ini key ``nnhil_field_name``; this repository's conftest.py its own
  without a prefix), and :func:`from_pytest` resolves command line, ini file and default.

The library (``host.run``, ``gateware.build_cli``, ...) takes these dataclasses, never a
command line's namespace. An old spelling of a renamed option is :func:`deprecated`: it
still works and says what to write instead.
"""
import argparse
import contextlib
import dataclasses
import logging
import os
import sys

from nnhil.gateware import layout, link, variants
from nnhil.training import datasets, home

TARGETS = ("sim", "arty")


def option(default=None, help="", *, type=None, choices=None, env=None, otherwise=None, metavar=None,
           repeat=False, cli=True, plugin=True):
    """A dataclass field that is an option. ``type`` defaults to the default's type (str
    when the default is None); a bool is a flag. ``env`` names the environment variable that
    gives the value when the option is not set (``otherwise`` says what is used without it);
    ``repeat`` collects every occurrence in a
    tuple. ``cli`` and ``plugin`` say where the option exists (the ``nnhil`` command line,
    the pytest options)."""
    kind = type or (bool if isinstance(default, bool) else str if default is None else default.__class__)
    return dataclasses.field(default=default, metadata={
        "help": help, "type": kind, "choices": tuple(choices) if choices else None, "env": env, "otherwise": otherwise,
        "metavar": metavar, "repeat": repeat, "cli": cli, "plugin": plugin})


def _dashed(name):
    return name.replace("_", "-")


def _fields(cls, only=None, where="cli"):
    fields = [f for f in dataclasses.fields(cls) if f.metadata.get(where, False)]
    if only is not None:
        unknown = set(only) - {f.name for f in fields}
        if unknown:
            raise ValueError(f"{cls.__name__} has no {where} option {', '.join(sorted(unknown))}")
        fields = [f for f in fields if f.name in only]
    return fields


def _help(f, default):
    """The help text with what the option takes when it is not given."""
    m = f.metadata
    text = m["help"]
    if m["env"]:
        otherwise = m["otherwise"] or (default if default not in (None, False, ()) else None)
        text += f" (default: ${m['env']}" + (f", else {otherwise}" if otherwise else "") + ")"
    elif default not in (None, False, ()) and "default" not in text:
        text += f" (default: {default})"
    return text.replace("%", "%%")


def add_arguments(parser, cls, only=None, defaults=None):
    """``parser``'s options of concern ``cls`` (its fields, or the ones named in ``only``);
    ``defaults`` overrides a field's default for this command."""
    defaults = defaults or {}
    for f in _fields(cls, only):
        m = f.metadata
        default = defaults.get(f.name, f.default)
        kwargs = {"dest": f.name, "help": _help(f, default)}
        if m["type"] is bool:
            parser.add_argument("--" + _dashed(f.name), action="store_true", default=default, **kwargs)
            continue
        if m["repeat"]:
            kwargs.update(action="append", default=None)
        else:
            kwargs["default"] = default
        parser.add_argument("--" + _dashed(f.name), type=m["type"], choices=m["choices"],
                            metavar=m["metavar"], **kwargs)


def from_namespace(cls, namespace):
    """The ``cls`` of a parsed command line (fields it has no option for keep their default;
    an option left unset takes its environment variable, if it has one)."""
    given = {}
    for f in dataclasses.fields(cls):
        if not hasattr(namespace, f.name):
            continue
        value = getattr(namespace, f.name)
        if f.metadata.get("repeat"):
            value = tuple(value or ())
        if value is None and f.metadata.get("env"):
            value = os.environ.get(f.metadata["env"]) or None
        given[f.name] = value
    return cls(**given)


# -- pytest ----------------------------------------------------------------------------------

def pytest_names(f, prefix):
    """(command-line option, ini key) of field ``f`` under ``prefix`` ("nnhil", or "" for none)."""
    return (f"--{prefix}-{_dashed(f.name)}" if prefix else f"--{_dashed(f.name)}",
            f"{prefix}_{f.name}" if prefix else f.name)


def add_pytest_options(parser, group, cls, prefix="nnhil", ini=True):
    """The pytest options of concern ``cls`` in ``group``: ``--<prefix>-name`` (dest the ini
    key), and with ``ini`` the ini key ``<prefix>_name`` that the command line overrides."""
    for f in _fields(cls, where="plugin"):
        m = f.metadata
        cli, key = pytest_names(f, prefix)
        help_text = _help(f, f.default)          # argparse's: a % is written %%
        if m["type"] is bool:
            group.addoption(cli, action="store_true", default=None if ini else False, dest=key, help=help_text)
        elif m["repeat"]:           # no ini key: a list does not fit one
            group.addoption(cli, action="append", default=[], dest=key, type=m["type"],
                            metavar=m["metavar"] or f.name.upper(), help=help_text)
        else:
            group.addoption(cli, type=m["type"], choices=m["choices"], dest=key, help=help_text,
                            default=None if ini else f.default,
                            metavar=None if m["choices"] else m["metavar"] or f.name.upper())
        if ini and not m["repeat"]:
            parser.addini(key, f"{help_text.replace('%%', '%')}; {cli} overrides it",
                          type="bool" if m["type"] is bool else "string", default=None)


def pytest_value(config, cls, name, prefix="nnhil", ini=True):
    """Option ``name`` of ``cls``: the command line's, else the ini file's, else its
    environment variable's, else its default. A bad ini value is a pytest.UsageError."""
    import pytest

    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    m = f.metadata
    cli, key = pytest_names(f, prefix)
    value = config.getoption(key)
    if m["repeat"]:                 # every occurrence on the command line (no ini key)
        return tuple(value or ())
    if value is not None or not ini:
        return value
    value = config.getini(key)
    if value in (None, ""):
        return (m["env"] and os.environ.get(m["env"])) or f.default
    if m["type"] is bool:
        return value
    try:
        value = m["type"](value)
    except ValueError:
        raise pytest.UsageError(f"{key} = {value!r} in the ini file: expected {m['type'].__name__}") from None
    if m["choices"] and value not in m["choices"]:
        raise pytest.UsageError(f"{key} = {value!r} in the ini file: expected one of {', '.join(m['choices'])}")
    return value


def from_pytest(config, cls, prefix="nnhil", ini=True):
    """The ``cls`` of a pytest run's options (fields without a pytest option keep their default)."""
    return cls(**{f.name: pytest_value(config, cls, f.name, prefix, ini) for f in _fields(cls, where="plugin")})


def option_names(cls, prefix=None):
    """{field: how a message names its option}: ``--name`` on the command line, or the
    prefixed pytest option."""
    return {f.name: pytest_names(f, prefix)[0] if prefix is not None else "--" + _dashed(f.name)
            for f in dataclasses.fields(cls)}


# -- renamed options -------------------------------------------------------------------------

class _Deprecated(argparse.Action):
    """An old spelling: warns, then stores into the new option's destination (its type and
    choices checked as the new option's are)."""

    def __init__(self, option_strings, dest, new=None, why="", **kwargs):
        self.new, self.why = new, why
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        new = next(a for a in parser._actions if self.new in a.option_strings)
        if self.nargs == 0:
            values = new.const if new.const is not None else True
        else:
            values = parser._get_value(new, values)
            if new.choices is not None and values not in new.choices:
                parser.error(f"{option_string} (now {self.new}): invalid choice: {values!r} "
                             f"(choose from {', '.join(map(str, new.choices))})")
        print(f"{parser.prog}: warning: {option_string} is deprecated, write {self.new}"
              + (f": {self.why}" if self.why else ""), file=sys.stderr)
        setattr(namespace, new.dest, values)


OUT_FILE = "--out names the one file a command writes (nnhil quantize, import, export)"


def deprecated(parser, old, new, why="", flag=False):
    """``old`` kept as a deprecated spelling of ``new`` (declared already): hidden from the
    help, it warns with ``why`` and sets ``new``."""
    parser.add_argument(old, action=_Deprecated, new=new, why=why, nargs=0 if flag else None,
                        dest=argparse.SUPPRESS, default=argparse.SUPPRESS)


# -- the concerns ----------------------------------------------------------------------------

def default_sims():
    """One simulation per core this process may run on (what ``pytest -n auto`` counts)."""
    return len(os.sched_getaffinity(0))


class InputError(ValueError):
    """Options, images or labels given to a run that cannot be; raised before any work."""


@dataclasses.dataclass(frozen=True)
class Target:
    """Where the SoC runs: ``nnhil run``/``demo``/``selftest`` and the pytest plugin."""
    target: str = option("sim", "where the SoC runs: the Verilator simulation, or an Arty A7 board",
                         choices=TARGETS)
    variant: str = option(variants.DEFAULT, "the Arty A7 variant (gateware/variants.py): its part and "
                          "accelerator, on the board and in its sim twin", choices=sorted(variants.VARIANTS))
    port: str = option(None, "the board's serial port, any pyserial URL (default: find the Arty's FTDI UART)")
    baud: int = option(link.BAUD, "baud rate of the board's UART")
    build_dir: str = option(None, "build directory of what the board runs (csr.json, software; default: "
                            "the cached Arty build of the variant)", metavar="DIR")
    bitstream: str = option(None, "program this bitstream into the board first (openFPGALoader)", metavar="FILE")
    sim_fallback: bool = option(False, "with a board target and no board found, run on the simulation "
                                "instead of stopping (pytest: skipping)")
    place: str = option(None, "acquire this labgrid place and use its board (coordinator: --lg-coordinator "
                        "or LG_COORDINATOR); a RemotePlace in labgrid's --lg-env does the same", cli=False,
                        metavar="NAME")
    sims: int = option(None, "spread the CPU inferences and the images over this many simulations "
                       "(default: one per core; 1 on a board)", type=int, plugin=False, metavar="N")

    @property
    def board(self):
        """The board's name, or None on the simulation."""
        return None if self.target == "sim" else self.target

    def simulations(self, name="--sims"):
        """How many simulations the options ask for; an InputError for a count that cannot be."""
        sims = self.sims if self.sims is not None else 1 if self.board else default_sims()
        if sims < 1:
            raise InputError(f"{name} {sims}: give a number of simulations, 1 or more")
        if self.board and sims > 1:
            raise InputError(f"{name} {sims}: a board is one target; give a number of simulations "
                             f"only with --target sim")
        return sims


@dataclasses.dataclass(frozen=True)
class Home:
    """Where builds, trained models and run history go (the plugin's; the CLI reads $NNHIL_HOME)."""
    home: str = option(None, "where builds, trained models and run history go (default: $NNHIL_HOME, "
                       "else ~/.cache/nnhil)", cli=False, metavar="DIR")


@dataclasses.dataclass(frozen=True)
class Data:
    """A dataset, and where its files are."""
    dataset: str = option(None, "the dataset (default: the one the model file records, else "
                          "fashion-mnist)", choices=sorted(datasets.DATASETS), plugin=False)
    data_dir: str = option(None, "folder with the gzip IDX files or the Kaggle CSVs",
                           env=datasets.DATA_DIR_ENV, otherwise="$NNHIL_HOME/data", metavar="DIR",
                           plugin=False)
    no_download: bool = option(False, "fail instead of downloading missing files", plugin=False)

    def name(self, recorded=None):
        """The dataset to use: the option's, else the one a model file records, else Fashion-MNIST."""
        return self.dataset or recorded or "fashion-mnist"


@dataclasses.dataclass(frozen=True)
class Images:
    """Which images a run takes: a dataset's test set, or the user's own."""
    images: int = option(None, "run the first N images (default: all of them)", type=int, metavar="N",
                         plugin=False)
    images_npy: str = option(None, "your own images instead: a .npy of uint8 in the model's input shape",
                             metavar="FILE", plugin=False)
    labels_npy: str = option(None, "their labels: a .npy of integer class indices (0 to the model's "
                             "outputs - 1), one per image", metavar="FILE", plugin=False)
    images_csv: str = option(None, "your own images as a CSV in the Kaggle layout: an optional header, "
                             "then label,pixel1,... or pixel1,... per image (labels used when present)",
                             metavar="FILE", plugin=False)


@dataclasses.dataclass(frozen=True)
class Results:
    """Where a run's outputs go, and what it traces."""
    results_dir: str = option(None, "where runs go: history.jsonl and board/<model>-<dataset>/ "
                              "(default: $NNHIL_HOME/out)", metavar="DIR", plugin=False)
    trace: int = option(None, "also rerun this image layer by layer and write every layer's on-board "
                        "output beside the model's (trace-IMAGE_INDEX.npz) and the report, even when "
                        "nothing differs", type=int, metavar="IMAGE_INDEX", plugin=False)
    wave: bool = option(False, "with --trace (or, on the simulation, for the first diverging image): "
                        "rerun it on the traced sim build and write the waveform of its first diverging "
                        "layer, trace-I.fst, with a GTKWave save file trace-I.gtkw marking the first "
                        "wrong write (docs/waveforms.md)", plugin=False)
    wave_all: bool = option(False, "--wave with every signal of the SoC in the window (the CPU's and the "
                            "bus's too): a traced build of its own, a larger file", plugin=False)

    def wave_scope(self):
        """The trace scope (gateware.buildcache.TRACE_SCOPES) a run's waveform dumps, None for none."""
        return "all" if self.wave_all else "accelerator" if self.wave else None

    def directory(self):
        """The results folder, resolved now (a parser built elsewhere must not fix the home)."""
        from pathlib import Path
        return Path(self.results_dir) if self.results_dir else home.out()


def add_accel_arguments(parser, only=None):
    """``--lanes``, ``--weight-words``, ... : the fields of gateware.layout.AccelConfig (the
    one declaration of the accelerator's parameters), each defaulting to the variant's."""
    for f in dataclasses.fields(layout.AccelConfig):
        if only is None or f.name in only:
            parser.add_argument("--" + _dashed(f.name), type=int, default=None, metavar="N",
                                help=f"the accelerator's {f.name.replace('_', ' ')} (default: the variant's; "
                                     f"gateware/layout.py's AccelConfig says what it takes)")


def accel_config(variant, namespace):
    """The variant's AccelConfig with the fields the command line gave; ValueError if it cannot be."""
    base = variants.get(variant).accel
    given = {f.name: getattr(namespace, f.name) for f in dataclasses.fields(layout.AccelConfig)
             if getattr(namespace, f.name, None) is not None}
    try:
        return dataclasses.replace(base, **given)
    except ValueError as e:
        raise ValueError(f"{', '.join('--' + _dashed(k) for k in given)}: {e}") from None


# -- logging ---------------------------------------------------------------------------------

def add_verbosity(parser, top=True):
    """The ``-v``/``-q`` pair: more detail, or warnings and errors alone. On the top parser
    (``top``) it sets the default; a subcommand's pair (``nnhil run -q``) only overrides it."""
    default = logging.INFO if top else argparse.SUPPRESS
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_const", const=logging.DEBUG, dest="log_level",
                       default=default, help="also log the details (debug messages)")
    group.add_argument("-q", "--quiet", action="store_const", const=logging.WARNING, dest="log_level",
                       default=default, help="log warnings and errors only (no progress)")


class _Console(logging.Handler):
    """Messages as the command prints them: the text alone, progress and results on stdout,
    warnings and errors on stderr (the streams looked up per message: pytest swaps them)."""

    def emit(self, record):
        try:
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def console_logging(level=logging.INFO):
    """nnhil's loggers printed at ``level`` for as long as the block runs (the CLI's; a
    library user or pytest configures logging its own way). Progress is INFO: shown by default."""
    logger = logging.getLogger("nnhil")
    saved = logger.level, logger.propagate
    handler = worker_logging(level)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def worker_logging(level=logging.INFO):
    """nnhil's loggers printed at ``level`` in this process from now on: the initializer of
    a worker process the command starts (it does not inherit the command's handler)."""
    logger = logging.getLogger("nnhil")
    handler = _Console()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False      # LiteX's SoC module calls logging.basicConfig: not printed twice
    return handler
