"""This repository's own fixtures: its datasets and its three trained models.

The options, markers and the ``dut`` fixture come from nnhil's pytest plugin
(``host/pytest_plugin.py``, installed with the package as a ``pytest11`` entry point).
"""
from pathlib import Path

import pytest

from nnhil.training import workflow

LATENCY_BASELINES = Path(__file__).resolve().parent / "tests" / "baselines" / "latency.json"


def pytest_addoption(parser):
    parser.getgroup("nnhil").addoption("--runslow", action="store_true",
                                       help="also run tests marked slow (long trainings, synthesis)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="slow: run with --runslow"))


@pytest.fixture(scope="session")
def repo_baselines():
    """This repository's latency baselines of its own models (host.latency reads the file it is given)."""
    return LATENCY_BASELINES


@pytest.fixture(scope="session")
def dataset():
    """Loads a dataset from $NNHIL_DATA_DIR (downloaded and verified if missing), once."""
    cache = {}
    def get(name):
        if name not in cache:
            cache[name] = workflow.load_data(name)
        return cache[name]
    return get


@pytest.fixture(scope="session")
def fashion(dataset):
    return dataset("fashion-mnist")


@pytest.fixture(scope="session")
def trained(dataset, suite_property):
    """A model of workflow.MODELS by name, trained once and cached under out/ by its config hash."""
    cache = {}
    def get(name):
        if name not in cache:
            arch, data_name = workflow.MODELS[name]
            data = dataset(data_name)
            model, out_dir = workflow.ensure_model(workflow.ARCHS[arch](), data)
            suite_property(f"model_hash_{name}", model.hash)
            cache[name] = workflow.Trained(name, model, out_dir, data)
        return cache[name]
    return get


@pytest.fixture(scope="session")
def every_model(trained):
    """Every model of workflow.MODELS, trained or taken from out/ here, for a test whose
    subprocess (a nested pytest run, the demo) would otherwise train them inside its timeout."""
    return {name: trained(name) for name in workflow.MODELS}


@pytest.fixture(scope="session")
def headline(trained):
    """The README's default model (the MLP)."""
    t = trained("mlp")
    return t.model, t.out_dir
