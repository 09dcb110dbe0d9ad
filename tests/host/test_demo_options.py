"""host.demo.Options: the demo as data, and bad options named before any training or sim starts."""
import argparse

import pytest

from nnhil.host import demo, options
from nnhil.host.options import InputError
from nnhil.training import home


@pytest.mark.parametrize("bad, message", [
    (dict(arch="rnn"), "--arch rnn: expected one of cnn, mlp, all"),
    (dict(data=options.Data(dataset="cifar")), "--dataset cifar: expected one of fashion-mnist, mnist"),
    (dict(images=0), "--images 0: give a number of test images, 1 or more"),
    (dict(images=-5), "--images -5: give a number of test images, 1 or more"),
    (dict(target=options.Target(sims=0)), "--sims 0: give a number of simulations"),
    (dict(target=options.Target(target="arty", sims=2)), "--sims 2: .* only with --target sim"),
])
def test_bad_options_are_named(bad, message):
    with pytest.raises(InputError, match=message):
        demo.Options(**bad)


def test_the_command_line_gives_the_same_options(monkeypatch, tmp_path):
    monkeypatch.setenv("NNHIL_HOME", str(tmp_path))
    monkeypatch.delenv("NNHIL_DATA_DIR", raising=False)     # an option left unset takes it
    p = argparse.ArgumentParser()
    demo.add_arguments(p)
    args = p.parse_args(["--arch", "all", "--images", "40", "--sims", "1"])
    opts = demo.Options.from_args(args)
    assert opts == demo.Options(arch="all", images=40, target=options.Target(sims=1))
    assert opts.results.directory() == home.out() == tmp_path / "out"
    assert demo.Options.from_args(p.parse_args([])) == demo.Options()
