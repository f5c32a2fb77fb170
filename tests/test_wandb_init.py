"""kd.wandb_init: W&B starts offline, online, or falls back to offline with one warning; it never hangs."""

import logging
import socket
import time

import pytest

from kd import wandb_init
from kd.wandb_init import display_url, server_reachable, start_wandb_logger, sync_command


@pytest.fixture
def closed_port():
    """A 127.0.0.1 port that is bound but not listening: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


class FakeLogger:
    def __init__(self, fail=None, **kwargs):
        self.kwargs, self.fail = kwargs, fail

    @property
    def experiment(self):
        if self.fail:
            raise self.fail
        return "run"


def test_server_reachable_is_true_for_a_listening_port_and_false_for_a_closed_one(closed_port, monkeypatch):
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        assert server_reachable(f"http://127.0.0.1:{server.getsockname()[1]}", timeout=2)
    start = time.monotonic()
    assert not server_reachable(f"http://127.0.0.1:{closed_port}", timeout=2)
    assert not server_reachable("not a url", timeout=2)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # a proxy is not used for loopback addresses
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        assert server_reachable(f"http://127.0.0.1:{server.getsockname()[1]}", timeout=2)
    assert time.monotonic() - start < 5


def test_server_reachable_gives_up_after_its_timeout(monkeypatch):
    def slow_connection(*args, **kwargs):
        time.sleep(5)
        raise OSError("too late")

    monkeypatch.setattr(wandb_init.socket, "create_connection", slow_connection)
    start = time.monotonic()
    assert not server_reachable("https://api.wandb.ai", timeout=0.2)
    assert time.monotonic() - start < 2


def test_display_url_drops_credentials_path_and_query():
    assert display_url("https://user:secret@wandb.example.com:8443/x?key=abc") == "https://wandb.example.com:8443"
    assert display_url("https://api.wandb.ai") == "https://api.wandb.ai"


def test_offline_request_makes_an_offline_logger_without_touching_the_network(monkeypatch):
    monkeypatch.setattr(wandb_init, "server_reachable", lambda *a: pytest.fail("probed the server"))
    logger = start_wandb_logger(FakeLogger, offline=True, save_dir="out", run_id="abc")
    assert logger.kwargs == {"offline": True}


def test_unreachable_server_falls_back_offline_with_one_warning_naming_wandb_sync(closed_port, monkeypatch, caplog):
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port}")
    with caplog.at_level(logging.WARNING, logger="kd.wandb_init"):
        logger = start_wandb_logger(FakeLogger, offline=False, save_dir="out", run_id="abc12345")
    assert logger.kwargs == {"offline": True}
    assert len(caplog.records) == 1
    assert f"127.0.0.1:{closed_port} is not reachable" in caplog.text
    assert "wandb sync out/wandb/offline-run-*-abc12345" in caplog.text


def test_reachable_server_starts_the_run_with_a_bounded_init_and_falls_back_when_it_fails(monkeypatch, caplog):
    monkeypatch.setattr(wandb_init, "server_reachable", lambda *a: True)
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    online = start_wandb_logger(FakeLogger, offline=False, save_dir="out", run_id="abc", init_timeout=7)
    assert online.kwargs["offline"] is False and online.kwargs["settings"].init_timeout == 7

    def online_fails(**kwargs):
        error = None if kwargs["offline"] else RuntimeError(f"run initialization timed out (key {'k' * 40})")
        return FakeLogger(fail=error, **kwargs)

    with caplog.at_level(logging.WARNING, logger="kd.wandb_init"):
        logger = start_wandb_logger(online_fails, offline=False, save_dir="out", run_id="abc")
    assert logger.kwargs == {"offline": True} and logger.experiment == "run"
    assert len(caplog.records) == 1 and "RuntimeError: run initialization timed out" in caplog.text
    assert "k" * 40 not in caplog.text  # a key in an error message is masked


def test_sync_command_matches_every_part_of_a_resumed_offline_run(tmp_path):
    assert sync_command(tmp_path, "abc") == f"wandb sync {tmp_path}/wandb/offline-run-*-abc"


def test_a_configured_proxy_is_probed_instead_of_the_server_it_would_carry_to(closed_port, monkeypatch):
    for name in ("no_proxy", "NO_PROXY", "https_proxy", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as proxy:
        proxy.bind(("127.0.0.1", 0))
        proxy.listen(1)
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.getsockname()[1]}")
        assert server_reachable("https://wandb.invalid", timeout=2)  # the proxy answers; the name is never looked up
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed_port}")
    assert not server_reachable("https://wandb.invalid", timeout=2)
