"""Server start-up robustness, cheaply: `fake_server.py` (a plain HTTP process answering /health) stands in for the
slow vLLM server to exercise the session fixture's `VLLMServer` (port choice, bounded wait, error messages); TRL's own
bounded wait runs against a port nobody listens on. The death of a real server mid-run is in test_server.py.
"""

import socket
import sys
import time

import pytest
from vllm_support import HERE, ServerStartError, VLLMServer, build_trainer, find_free_port, vcrl_config


def _fake(*extra):
    return lambda host, port: [sys.executable, str(HERE / "fake_server.py"), "--port", str(port), *extra]


def test_preferred_port_in_use_picks_a_free_one(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = VLLMServer(None, tmp_path, preferred_port=taken.getsockname()[1], startup_timeout=30,
                            command_factory=_fake())  # fmt: skip
        try:
            server.start()
            assert server.port != taken.getsockname()[1] and server.health()
        finally:
            server.stop()
    assert not server.alive


def test_slow_server_bounded_wait_and_clear_error(tmp_path):
    server = VLLMServer(None, tmp_path, startup_timeout=3, command_factory=_fake("--delay", "600"))
    started = time.monotonic()
    with pytest.raises(ServerStartError, match=r"not healthy at http://127\.0\.0\.1:\d+/health after 3 s"):
        server.start()
    assert time.monotonic() - started < 30 and not server.alive, "the slow server must be killed, not left behind"


def test_server_exiting_during_startup_gives_clear_error(tmp_path):
    server = VLLMServer(None, tmp_path, startup_timeout=60, command_factory=_fake("--exit-code", "3"))
    with pytest.raises(ServerStartError, match=r"exited with code 3(.|\n)*failing on purpose"):
        server.start()


def test_trainer_waits_for_server_with_timeout(tiny_model_dir, tmp_path):
    """TRL's own wait for the server (`vllm_server_timeout`) is bounded and names the URL."""
    import requests

    url = f"http://127.0.0.1:{find_free_port()}"
    args = vcrl_config(str(tmp_path), vllm_mode="server", vllm_server_base_url=url, vllm_server_timeout=3)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ConnectionError, match=rf"can't be reached at {url} after 3"):
        build_trainer(tiny_model_dir, args)
    assert time.monotonic() - started < 60
