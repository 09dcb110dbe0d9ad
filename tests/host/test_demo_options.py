"""host.demo.Options: the demo as data, and bad options named before any training or sim starts."""
import argparse

import pytest

from nnhil.host import demo
from nnhil.host.run import InputError
from nnhil.training import home


@pytest.mark.parametrize("bad, message", [
    (dict(model="rnn"), "--model rnn: expected one of cnn, mlp, all"),
    (dict(dataset="cifar"), "--dataset cifar: expected one of fashion-mnist, mnist"),
    (dict(images=0), "--images 0: give a number of test images, 1 or more"),
    (dict(images=-5), "--images -5: give a number of test images, 1 or more"),
    (dict(sims=0), "--sims 0: give a number of simulations"),
    (dict(sims=2, board="arty"), "--sims 2: .* only without --board"),
])
def test_bad_options_are_named(bad, message):
    with pytest.raises(InputError, match=message):
        demo.Options(**bad)


def test_the_command_line_gives_the_same_options(monkeypatch, tmp_path):
    monkeypatch.setenv("NNHIL_HOME", str(tmp_path))
    p = argparse.ArgumentParser()
    demo.add_arguments(p)
    args = p.parse_args(["--model", "all", "--images", "40", "--sims", "1"])
    options = demo.Options.from_args(args)
    assert options == demo.Options(model="all", images=40, sims=1)
    assert options.out == str(home.out()) == str(tmp_path / "out")
    assert demo.Options.from_args(p.parse_args([])) == demo.Options()
