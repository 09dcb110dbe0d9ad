"""host/options.py: each option declared once, in a dataclass, from which both the ``nnhil``
command line and the pytest plugin's options are generated; the renamed options' old
spellings still work and say what to write; -v/-q set what the command logs."""
import dataclasses
import importlib.util
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from _pytest.config.argparsing import Parser

from nnhil.host import cli, onnx_export_cmd, options, pytest_plugin
from nnhil.host.testmodels import random_default_model
from nnhil.training import modelfile

ROOT = Path(__file__).resolve().parents[2]


def _plugin_parser():
    parser = Parser(_ispytest=True)
    pytest_plugin.pytest_addoption(parser)
    return parser


def _subcommand(name):
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, type(parser._subparsers._group_actions[0])))
    return action.choices[name]


@dataclasses.dataclass(frozen=True)
class _Extended(options.Target):
    new_knob: int = options.option(3, "a knob this test adds", choices=(3, 5, 7))


def test_a_field_added_to_a_concern_is_an_option_of_the_cli_and_of_the_plugin(monkeypatch):
    monkeypatch.setattr(options, "Target", _Extended)
    run_help = _subcommand("run").format_help()
    assert "--new-knob {3,5,7}" in run_help and "a knob this test adds (default: 3)" in run_help
    for command in ("demo", "run"):
        args = cli.build_parser().parse_args([command, *(["m.npz"] if command == "run" else []), "--new-knob", "5"])
        assert options.from_namespace(options.Target, args).new_knob == 5
    parser = _plugin_parser()
    assert parser.parse(["--nnhil-new-knob", "7"]).nnhil_new_knob == 7
    assert "nnhil_new_knob" in parser._inidict and "--nnhil-new-knob overrides it" in parser._inidict["nnhil_new_knob"][0]
    with pytest.raises(pytest.UsageError, match="--nnhil-new-knob: invalid choice: 4"):   # its choices too
        parser.parse(["--nnhil-new-knob", "4"])


def test_where_an_option_exists_is_its_declaration():
    run_help = _subcommand("run").format_help()
    plugin = {n for opt in _plugin_parser()._anonymous.options for n in opt.names()}
    plugin |= {n for g in _plugin_parser()._groups for opt in g.options for n in opt.names()}
    for f in dataclasses.fields(options.Target):
        cli_name, plugin_name = "--" + f.name.replace("_", "-"), "--nnhil-" + f.name.replace("_", "-")
        assert (cli_name in run_help) == f.metadata["cli"], f.name
        assert (plugin_name in plugin) == f.metadata["plugin"], f.name
    assert "--nnhil-home" in plugin and "--place" not in run_help and "--nnhil-sims" not in plugin


def test_the_cli_and_the_plugin_share_help_choices_and_defaults():
    plugin = {opt.names()[0]: opt for g in _plugin_parser()._groups for opt in g.options}
    run = {a.dest: a for a in _subcommand("run")._actions}
    for name in ("target", "variant", "baud", "build_dir"):
        p = plugin["--nnhil-" + name.replace("_", "-")]
        assert p.attrs().get("choices") == run[name].choices
        assert p.attrs()["help"] == run[name].help
    assert run["baud"].default == options.Target().baud and run["target"].default == "sim"


def test_an_option_left_unset_takes_its_environment_variable(monkeypatch):
    args = cli.build_parser().parse_args(["eval", "m.npz"])
    monkeypatch.setenv("NNHIL_DATA_DIR", "/somewhere/data")
    assert options.from_namespace(options.Data, args).data_dir == "/somewhere/data"
    args = cli.build_parser().parse_args(["eval", "m.npz", "--data-dir", "here"])
    assert options.from_namespace(options.Data, args).data_dir == "here"
    assert "(default: $NNHIL_DATA_DIR, else $NNHIL_HOME/data)" in " ".join(_subcommand("eval").format_help().split())


def test_the_suite_options_come_from_one_declaration_too():
    spec = importlib.util.spec_from_file_location("nnhil_root_conftest", ROOT / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    parser = Parser(_ispytest=True)
    conftest.pytest_addoption(parser)
    ns = parser.parse(["--model", "a.npz", "--model", "b.npz", "--full"])

    class Config:                           # what from_pytest reads of a pytest Config
        getoption = staticmethod(lambda key: getattr(ns, key))
    suite = options.from_pytest(Config, conftest.Suite, prefix="", ini=False)
    assert suite == conftest.Suite(model=("a.npz", "b.npz"), full=True)
    assert suite.images == 300 and not suite.runslow


def test_a_bad_ini_value_stops_the_run_naming_the_choices(tmp_path):
    (tmp_path / "test_x.py").write_text("def test_x():\n    pass\n")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "nnhil_variant=a7-99"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == pytest.ExitCode.USAGE_ERROR, r.stdout + r.stderr
    assert "nnhil_variant = 'a7-99' in the ini file: expected one of a7-100, a7-35" in r.stderr


@pytest.mark.parametrize("argv, dest, value, new", [
    (["demo", "--model", "cnn"], "arch", "cnn", "--arch"),
    (["demo", "--board", "arty"], "target", "arty", "--target"),
    (["run", "m.npz", "--out", "runs"], "results_dir", "runs", "--results-dir"),
    (["train", "--out", "mine"], "model_dir", "mine", "--model-dir"),
    (["report", "--out", "r"], "report_dir", "r", "--report-dir"),
    (["resources", "--target", "soc"], "design", "soc", "--design"),
    (["resources", "--out", "w"], "work_dir", "w", "--work-dir"),
    (["build", "--trace"], "traced", True, "--traced"),
    (["selftest", "m.npz", "--out", "runs"], "results_dir", "runs", "--results-dir"),
])
def test_an_old_spelling_works_and_says_what_to_write(argv, dest, value, new, capsys):
    args = cli.build_parser().parse_args(argv)
    assert getattr(args, dest) == value
    old = next(a for a in argv if a.startswith("--"))
    err = capsys.readouterr().err
    assert f"warning: {old} is deprecated, write {new}" in err


def test_an_old_spelling_is_checked_as_the_new_one_and_hidden_from_the_help(capsys):
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(["demo", "--model", "resnet"])
    assert e.value.code == 2
    assert "--model (now --arch): invalid choice: 'resnet' (choose from cnn, mlp, all)" in capsys.readouterr().err
    demo = _subcommand("demo").format_help()
    assert "--arch {cnn,mlp,all}" in demo and "--model" not in demo and "--out" not in demo
    with pytest.raises(SystemExit):                     # --full was the default: gone, not renamed
        cli.build_parser().parse_args(["run", "m.npz", "--full"])


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "q.npz"
    modelfile.save_quantized(path, random_default_model("mlp"))
    return path


def test_progress_shows_by_default_and_q_keeps_warnings_only(model_file, tmp_path, capsys):
    assert cli.main(["export", str(model_file), "--out", str(tmp_path / "a.onnx")]) == 0
    assert "wrote " in capsys.readouterr().out
    for argv in (["-q", "export"], ["export", "-q"]):
        assert cli.main([*argv, str(model_file), "--out", str(tmp_path / "b.onnx")]) == 0
        assert (tmp_path / "b.onnx").exists() and capsys.readouterr().out == ""
    assert cli.main(["-v", "export", str(model_file), "--out", str(tmp_path / "c.onnx")]) == 0
    out = capsys.readouterr().out
    assert "nnhil export: " in out and f"model={str(model_file)!r}" in out and "wrote " in out
    assert not logging.getLogger("nnhil").handlers, "the command left its handler behind"


def test_the_library_logs_and_pytest_captures_it(model_file, tmp_path, caplog, capsys):
    with caplog.at_level(logging.INFO, logger="nnhil"):
        onnx_export_cmd.run(model_file, tmp_path / "m.onnx")
    assert [r.name for r in caplog.records] == ["nnhil.host.onnx_export_cmd"]
    assert "wrote " in caplog.records[0].getMessage() and capsys.readouterr().out == ""
