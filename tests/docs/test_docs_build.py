"""The documentation site builds strict (a broken link, a missing reference or any doc
warning fails), its generated references hold what the code declares, and the README stays
a short page that links into it."""
import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("docs")
    r = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html",
                        "-d", str(out / "doctrees"), str(REPO / "docs"), str(out / "html")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"the docs build warned or failed:\n{r.stderr[-6000:]}"
    return out / "html"


def _text(html):
    return re.sub(r"<[^>]+>", "", html.read_text()).replace("&#8212;", "-").replace("&gt;", ">").replace("&lt;", "<")


def test_cli_reference_has_every_subcommand_and_option(site):
    from nnhil.host import cli
    page = _text(site / "cli.html")
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, p in sub.choices.items():
        assert f"nnhil {name}" in page
        assert p.description and p.description.split()[0] in page, f"nnhil {name} has no description"
        assert p.epilog and "examples:" in p.epilog, f"nnhil {name} --help has no examples"
        for action in p._actions:
            if action.help == argparse.SUPPRESS:        # an old spelling, deprecated (docs/cli.md lists it)
                continue
            for opt in action.option_strings:
                assert opt in page, f"nnhil {name} {opt} is missing from the CLI reference"


def test_pytest_reference_has_every_plugin_option_and_marker(site):
    from nnhil.host import pytest_plugin
    sys.path.insert(0, str(REPO / "docs"))
    from nnhil_docs import RecordingParser
    rec = RecordingParser()
    pytest_plugin.pytest_addoption(rec)
    page = _text(site / "pytest-reference.html")
    for names, _ in rec.options:
        assert all(n in page for n in names), names
    import tomllib
    ini = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    markers = [line.partition(":")[0].strip() for line in ini["markers"]]
    assert markers and all(m in page for m in markers), markers


def test_register_reference_is_layout_py(site):
    from nnhil.gateware import layout
    page = _text(site / "registers.html")
    for record in (layout.DESCRIPTOR, layout.BIAS, layout.REQUANT, layout.FLAGS):
        for f in record:
            assert f.name in page
    for name in layout.ERROR_NAMES.values():
        assert f"ERR_{name.upper()}" in page
    cfg = layout.AccelConfig()
    for region in layout.REGIONS:
        assert f"0x{cfg.region_base[region]:05x}, {cfg.region_words[region]}" in page


def test_readme_is_short_and_its_links_resolve():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target:
            continue
        assert (REPO / target).exists(), f"README links to {target}, which does not exist"


def test_a_broken_link_or_anchor_fails_the_build(tmp_path):
    """The strict build is strict with this configuration: a link to a missing page, to a
    heading that does not exist and a toctree entry without a page each fail it, by name."""
    import shutil
    src = tmp_path / "docs"
    src.mkdir()
    for name in ("conf.py", "nnhil_docs.py"):
        shutil.copy(REPO / "docs" / name, src / name)
    (src / "index.md").write_text("# Index\n\n```{toctree}\npage\nno-such-page\n```\n")
    (src / "page.md").write_text("# Page\n\n## A heading\n\nSee [gone](gone.md) and [here](index.md#no-such-heading) "
                                 "and [fine](#a-heading).\n")
    r = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html",
                        str(src), str(tmp_path / "html")], capture_output=True, text=True, timeout=600)
    assert r.returncode != 0
    assert "gone.md" in r.stderr and "no-such-heading" in r.stderr and "no-such-page" in r.stderr
    assert "a-heading" not in r.stderr
