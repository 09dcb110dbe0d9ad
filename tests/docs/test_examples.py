"""Every code example in README.md and docs/ runs (mdexamples.py says how blocks are marked):
a stale command, path or API fails here. Examples that need a board, Vivado or minutes of
work carry a skip reason; the ones that run the simulation are in the slow tier."""
import os
import subprocess
import sys

import pytest

from mdexamples import RUNNABLE, blocks, documents, examples

EXAMPLES = examples(documents())
TIMEOUT = 1200      # the slowest example trains an MLP for one epoch and runs 20 images on the sim


def _param(ex):
    marks = [pytest.mark.slow] if ex.slow else []
    if ex.skip:
        marks.append(pytest.mark.skip(reason=f"{ex.id}: {ex.skip}"))
    return pytest.param(ex, id=ex.id, marks=marks)


def _run(args, cwd, timeout=TIMEOUT, **kw):
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, **kw)


@pytest.mark.parametrize("ex", [_param(e) for e in EXAMPLES])
def test_example(ex, tmp_path, trained):
    for name in ex.needs:
        trained(name)                    # the suite's cached model, not a training inside the timeout
    if ex.pytest:
        (tmp_path / "test_example.py").write_text(ex.code + "\n")
        r = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py"], tmp_path)
        expected = []
    elif ex.lang == "python":
        (tmp_path / "example.py").write_text(ex.code + "\n")
        r = _run([sys.executable, "example.py"], tmp_path)
        expected = ex.expected
    else:
        script, expected = ex.commands()
        r = _run(["bash", "-e", "-o", "pipefail", "-c", script], tmp_path)
        expected = expected + ex.expected
    assert r.returncode == 0, f"{ex.id} failed ({r.returncode}):\n{ex.code}\n--- stdout\n{r.stdout[-4000:]}\n--- stderr\n{r.stderr[-4000:]}"
    missing = [line for line in expected if line not in r.stdout]
    assert not missing, f"{ex.id}: the output shown differs from what it prints; missing lines:\n" + "\n".join(missing) \
        + f"\n--- stdout\n{r.stdout[-4000:]}"


def test_every_runnable_block_is_an_example():
    """A runnable block is found as an example (not lost to a fence the parser misreads),
    and the documents hold examples at all."""
    runnable = [(p, line) for p in documents() for line, lang, _, _ in blocks(p) if lang in RUNNABLE]
    assert runnable and len(runnable) == len(EXAMPLES)
    assert any(not e.skip and not e.slow for e in EXAMPLES), "no example runs in the default suite"


def test_marker_errors_are_named(tmp_path):
    from mdexamples import examples as parse
    bad = tmp_path / "bad.md"
    bad.write_text("<!-- example: skip -->\n```sh\ntrue\n```\n")
    with pytest.raises(ValueError, match="needs a reason"):
        parse([bad])
    bad.write_text("<!-- example: sloww -->\n```sh\ntrue\n```\n")
    with pytest.raises(ValueError, match="unknown example marker 'sloww'"):
        parse([bad])
