"""The CLI explains itself: every subcommand's --help has a description and examples, an
option with choices lists them, and ``nnhil cycles`` takes --variant and checks --lanes."""
import pytest

from nnhil.gateware import variants
from nnhil.host import cli


def _subparsers():
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return parser, action.choices


def test_the_top_line_says_what_nnhil_is(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "The ``nnhil`` command line" not in out
    assert "bit-exact" in out and "nnhil demo" in out


@pytest.mark.parametrize("name", sorted(_subparsers()[1]))
def test_every_subcommand_has_a_description_and_examples(name, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([name, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    description, examples = out.split("\n\n")[1], out.split("examples:\n")[-1]
    assert len(description.split()) >= 8, f"nnhil {name} --help: no description"
    assert "examples:" in out and f"nnhil {name}" in examples


def test_every_option_with_choices_lists_them():
    for name, p in _subparsers()[1].items():
        help_text = p.format_help()
        for action in p._actions:
            if action.choices and action.option_strings:
                assert "{" + ",".join(map(str, action.choices)) + "}" in help_text, (name, action.dest)
    train = _subparsers()[1]["train"].format_help()
    assert "one of: cosine, constant" in train and "one of: standardize, unit" in train


def test_a_bad_choice_is_refused_naming_the_choices(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--schedule", "linear"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--schedule: invalid choice: 'linear'" in err and "cosine" in err and "constant" in err


def test_cycles_takes_the_variant(capsys):
    assert cli.main(["cycles", "--variant", "a7-100"]) == 0
    lanes = variants.get("a7-100").accel.lanes
    assert f"cycles per inference on {lanes} lanes" in capsys.readouterr().out
    assert cli.main(["cycles", "--lanes", "128"]) == 0
    assert "on 128 lanes" in capsys.readouterr().out


@pytest.mark.parametrize("lanes", ["6", "0", "-64"])
def test_cycles_refuses_a_lane_count_the_accelerator_cannot_have(lanes):
    with pytest.raises(SystemExit, match=f"nnhil cycles: error: --lanes: lanes must be a power of two >= 4, got {lanes}"):
        cli.main(["cycles", "--lanes", lanes])
