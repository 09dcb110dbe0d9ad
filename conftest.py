"""nnhil's pytest plugin: command-line options and the fixtures shared by all tests."""
import pytest

from training import workflow
from training.train import TrainConfig


def pytest_addoption(parser):
    group = parser.getgroup("nnhil")
    group.addoption("--runslow", action="store_true",
                    help="also run tests marked slow (long trainings, synthesis)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def fashion():
    """Fashion-MNIST from $NNHIL_DATA_DIR (downloaded and verified if missing)."""
    return workflow.load_data("fashion-mnist")


@pytest.fixture(scope="session")
def headline(fashion):
    """The README's default model, trained once and cached under out/ by its config hash."""
    model, out_dir = workflow.ensure_model(TrainConfig(), fashion)
    return model, out_dir
