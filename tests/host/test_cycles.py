"""host.cycles: ``nnhil cycles`` against the cycles the RTL counted."""
from nnhil.gateware.layout import AccelConfig
from nnhil.host import cycles as cycles_cmd, latency


def test_cycles_command(capsys, repo_baselines):
    """Its figures are the ones the RTL counted: the committed latency baselines of the sim."""
    cfg = AccelConfig()
    cycles = cycles_cmd.print_cycles(cfg)
    baselines = latency.load(repo_baselines)
    assert cycles == {arch: baselines[latency.key(arch, "fashion-mnist", "sim")]["measured"]["accelerator_cycles"]
                      for arch in ("mlp", "cnn")}
    out = capsys.readouterr().out
    assert f"mlp: {cycles['mlp']} cycles per inference on {cfg.lanes} lanes" in out
    assert "conv 2x2 (1,28,28)->16 + pool" in out and "dense 784->128" in out
    assert "(memory port-bound)" in out and "(MAC-bound)" in out
