"""Sphinx directives that generate nnhil's reference pages from the code itself.

Nothing here restates a fact: the CLI reference is ``argparse``'s own help of every
subcommand of ``host/cli.py``'s parser, the pytest options are what the plugin's (and a
conftest's) ``pytest_addoption`` declares, called on a recording parser, and the register
map, descriptor and error codes are ``gateware/layout.py``'s tables. A new subcommand,
option, field or error code appears in the docs without an edit here; one that this module
cannot render fails the docs build (a warning, and the build is strict).

Directives (each takes no content):

``nnhil-cli``               every ``nnhil`` subcommand: one section each, its ``--help``
``nnhil-pytest-options``    the options of the module(s) named as arguments, a table
``nnhil-pytest-markers``    the plugin's markers and the ones pyproject.toml declares
``nnhil-record``            the bit fields of a ``layout`` record (argument: its name)
``nnhil-regions``           the accelerator's memory regions and configuration, for each variant
``nnhil-docstring``         a module's docstring as written (a plain-text specification)
``nnhil-constants``         a module's constants of a prefix (``ERR_``, ``CTRL_``), with their comments
"""
import argparse
import contextlib
import importlib
import os
import re
import tokenize
import tomllib
from pathlib import Path

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

REPO = Path(__file__).resolve().parent.parent
HELP_COLUMNS = "96"


@contextlib.contextmanager
def _neutral_environment():
    """Defaults that come from the environment (``$NNHIL_HOME``, ``$NNHIL_DATA_DIR``, the
    terminal's width) rendered the same on every machine: the home shows as ``$NNHIL_HOME``."""
    saved = {k: os.environ.get(k) for k in ("NNHIL_HOME", "NNHIL_DATA_DIR", "COLUMNS")}
    os.environ.update(NNHIL_HOME="$NNHIL_HOME", COLUMNS=HELP_COLUMNS)
    os.environ.pop("NNHIL_DATA_DIR", None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _cell(value):
    entry = nodes.entry()
    if isinstance(value, nodes.Node):
        entry += nodes.paragraph("", "", value)
    else:
        entry += nodes.paragraph(text=str(value))
    return entry


def table(headers, rows):
    """A docutils table; a cell is a string or an inline node (e.g. ``nodes.literal``)."""
    group = nodes.tgroup(cols=len(headers))
    for _ in headers:
        group += nodes.colspec(colwidth=1)
    head = nodes.thead()
    head += nodes.row("", *(_cell(h) for h in headers))
    body = nodes.tbody()
    for r in rows:
        body += nodes.row("", *(_cell(c) for c in r))
    group += head
    group += body
    return nodes.table("", group)


def _section(directive, title, ident):
    sec = nodes.section(ids=[ident], names=[nodes.fully_normalize_name(title)])
    sec += nodes.title(text=title)
    directive.state.document.note_implicit_target(sec, sec)
    return sec


def subcommands(parser):
    """{name: (one-line help, subparser)} of an argparse parser, in declaration order."""
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if len(actions) != 1:
        raise ValueError(f"expected one set of subcommands in {parser.prog}, found {len(actions)}")
    helps = {a.dest: a.help for a in actions[0]._choices_actions}
    return {name: (helps.get(name) or "", p) for name, p in actions[0].choices.items()}


class CLIDirective(SphinxDirective):
    """Every subcommand of ``nnhil.host.cli.build_parser()``: its help line and its ``--help``."""
    has_content = False

    def run(self):
        with _neutral_environment():
            from nnhil.host import cli
            parser = cli.build_parser()
            top = parser.format_help()
            subs = {name: (line, p.format_help()) for name, (line, p) in subcommands(parser).items()}
        out = [nodes.literal_block(top, top, language="text")]
        for name, (line, text) in subs.items():
            if not line:
                self.state.document.reporter.warning(f"nnhil {name} has no help line", line=self.lineno)
            if not (p := subcommands(parser)[name][1]).description:
                self.state.document.reporter.warning(f"nnhil {name} has no description", line=self.lineno)
            sec = _section(self, f"nnhil {name}", f"cli-{name}")
            sec += nodes.paragraph(text=line)
            sec += nodes.literal_block(text, text, language="text")
            out.append(sec)
        return out


class _RecordingGroup:
    def __init__(self, options):
        self.options = options

    def addoption(self, *names, **kwargs):
        self.options.append((names, kwargs))

    _addoption = addoption


class RecordingParser(_RecordingGroup):
    """Takes what a ``pytest_addoption(parser)`` declares, without pytest running."""
    def __init__(self):
        super().__init__([])
        self.ini = []

    def getgroup(self, name, description="", after=None):
        return _RecordingGroup(self.options)

    def addini(self, name, help, type=None, default=None, **kwargs):
        self.ini.append((name, help, default))


def _option_row(names, kw):
    action = kw.get("action")
    metavar = kw.get("metavar") or ("" if action in ("store_true", "store_false", "count")
                                    else names[-1].lstrip("-").upper().replace("-", "_"))
    spelled = ", ".join(names) + (f" {metavar}" if metavar else "")
    choices = kw.get("choices")
    default = kw.get("default")
    help_text = (kw.get("help") or "") % {"default": default}
    if choices:
        help_text += " (one of: " + ", ".join(map(str, choices)) + ")"
    if action == "append" and "repeatable" not in help_text:
        help_text += " (repeatable)"
    return [nodes.literal(text=spelled), help_text]


class PytestOptionsDirective(SphinxDirective):
    """The options the named modules' ``pytest_addoption`` declare (arguments: importable
    module names, or paths relative to the repository for a conftest.py)."""
    required_arguments = 1
    optional_arguments = 8
    has_content = False

    def run(self):
        rows = []
        for target in self.arguments:
            if target.endswith(".py"):
                spec = importlib.util.spec_from_file_location("nnhil_docs_conftest", REPO / target)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
            else:
                module = importlib.import_module(target)
            recorder = RecordingParser()
            with _neutral_environment():
                module.pytest_addoption(recorder)
            if not recorder.options:
                self.state.document.reporter.warning(f"{target} declares no pytest options", line=self.lineno)
            rows += [_option_row(names, kw) + [target] for names, kw in recorder.options]
        return [table(["option", "meaning", "declared in"], rows)]


class PytestMarkersDirective(SphinxDirective):
    """The plugin's markers (its ``MARKERS``) and the repository's (pyproject.toml)."""
    has_content = False

    def run(self):
        plugin = importlib.import_module("nnhil.host.pytest_plugin")
        markers = getattr(plugin, "MARKERS", {})      # none today: a user's project needs none
        rows = [[nodes.literal(text=k), v, "the plugin (any project)"] for k, v in markers.items()]
        ini = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
        for line in ini.get("markers", []):
            name, _, text = line.partition(":")
            if name.strip() not in markers:
                rows.append([nodes.literal(text=name.strip()), text.strip(), "this repository (pyproject.toml)"])
        return [table(["marker", "meaning", "declared by"], rows)]


def _source_comments(module):
    """{(line number): comment text} of a module's source: the comments beside its tables."""
    path = Path(module.__file__)
    out = {}
    with open(path, "rb") as f:
        for tok in tokenize.tokenize(f.readline):
            if tok.type == tokenize.COMMENT:
                out[tok.start[0]] = tok.string.lstrip("#").strip()
    return out, path.read_text().splitlines()


class RecordDirective(SphinxDirective):
    """The bit fields of one ``gateware.layout`` record (argument: DESCRIPTOR, BIAS, ...),
    with the comment beside each field's declaration."""
    required_arguments = 1
    has_content = False

    def run(self):
        from nnhil.gateware import layout
        record = getattr(layout, self.arguments[0], None)
        if not isinstance(record, layout.Record):
            self.state.document.reporter.warning(f"layout.{self.arguments[0]} is not a Record", line=self.lineno)
            return []
        comments, lines = _source_comments(layout)
        start = next(i for i, line in enumerate(lines, 1) if line.startswith(f"{self.arguments[0]} = Record("))
        rows = []
        for f in record:
            word, bit = divmod(f.offset, 32)
            decl = next((i for i in range(start, len(lines) + 1) if f'Field("{f.name}"' in lines[i - 1]), None)
            note = _comment_at(comments, lines, decl) if decl else ""
            rows.append([nodes.literal(text=f.name), str(word), f"{bit + f.width - 1}..{bit}" if f.width > 1 else str(bit),
                         str(f.width), "yes" if f.signed else "", note])
        return [nodes.paragraph(text=f"{record.name}: {record.width} bits, {record.words} 32-bit word"
                                     f"{'s' if record.words > 1 else ''}, little-endian (field bits within the word)."),
                table(["field", "word", "bits", "width", "signed", "what"], rows)]


class RegionsDirective(SphinxDirective):
    """The regions of the accelerator's Wishbone window, for each variant's configuration."""
    has_content = False

    def run(self):
        from nnhil.gateware import layout, variants
        names = [variants.DEFAULT] + sorted(set(variants.VARIANTS) - {variants.DEFAULT})
        cfgs = [variants.get(n).accel for n in names]
        headers = ["region"] + [f"{n}: base word, words" for n in names]
        rows = [[nodes.literal(text=r)] + [f"0x{c.region_base[r]:05x}, {c.region_words[r]}" for c in cfgs]
                for r in layout.REGIONS]
        rows.append(["window (words)"] + [str(c.window_words) for c in cfgs])
        fields = list(layout.AccelConfig.__dataclass_fields__)
        rows += [[nodes.literal(text=f)] + [str(getattr(c, f)) for c in cfgs] for f in fields]
        return [table(headers, rows)]


def _comment_at(comments, lines, i):
    """The comment on line ``i`` and the comment-only lines that continue it."""
    text = [comments.get(i, "")]
    while i < len(lines) and lines[i].lstrip().startswith("#"):
        i += 1
        text.append(comments[i])
    return " ".join(t for t in text if t)


class ConstantsDirective(SphinxDirective):
    """A module's constants whose names start with one of the arguments (``ERR_``, ``CTRL_``,
    ...), with their values and the comments that say what they mean; ``:module:`` names the
    module (default ``nnhil.gateware.layout``)."""
    required_arguments = 1
    optional_arguments = 16
    option_spec = {"module": str}
    has_content = False

    def run(self):
        module = importlib.import_module(self.options.get("module", "nnhil.gateware.layout"))
        comments, lines = _source_comments(module)
        prefixes = "|".join(map(re.escape, self.arguments))
        pattern = re.compile(r"((?:%s)\w*(?:,\s*(?:%s)\w*)*)\s*=[^=]" % (prefixes, prefixes))
        rows = []
        for i, line in enumerate(lines, 1):
            m = pattern.match(line)
            if not m:
                continue
            for name in (n.strip() for n in m.group(1).split(",")):
                value = getattr(module, name)
                shown = f"{value} (0x{value:x})" if isinstance(value, int) and value > 9 else repr(value) \
                    if isinstance(value, str) else str(value)
                rows.append([nodes.literal(text=name), shown, _comment_at(comments, lines, i)])
        if not rows:
            self.state.document.reporter.warning(f"{module.__name__} has no constants {self.arguments}",
                                                 line=self.lineno)
        return [table(["name", "value", "meaning"], rows)]


class DocstringDirective(SphinxDirective):
    """A module's docstring as written (a specification laid out in plain text, formulas
    aligned), in a literal block (argument: the module)."""
    required_arguments = 1
    has_content = False

    def run(self):
        import inspect
        text = inspect.getdoc(importlib.import_module(self.arguments[0])) or ""
        if not text:
            self.state.document.reporter.warning(f"{self.arguments[0]} has no docstring", line=self.lineno)
        return [nodes.literal_block(text, text, language="text")]


def setup(app):
    app.add_directive("nnhil-cli", CLIDirective)
    app.add_directive("nnhil-pytest-options", PytestOptionsDirective)
    app.add_directive("nnhil-pytest-markers", PytestMarkersDirective)
    app.add_directive("nnhil-record", RecordDirective)
    app.add_directive("nnhil-regions", RegionsDirective)
    app.add_directive("nnhil-constants", ConstantsDirective)
    app.add_directive("nnhil-docstring", DocstringDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
