"""Start a Weights & Biases logger without ever blocking training.

With ``WANDB_API_KEY`` set and no reachable server, ``wandb.init`` retries for minutes ("wandb: setting up run").
``start_wandb_logger`` bounds that:

1. offline requested (no key, ``WANDB_MODE=offline``, ``logger.offline=true``): an offline logger, no network;
2. else the server (``WANDB_BASE_URL``, default https://api.wandb.ai; through ``HTTPS_PROXY``/``HTTP_PROXY`` when
   set) is probed with one TCP connection bounded by ``probe_timeout`` seconds, name lookup included;
3. reachable: the run is started now, ``wandb.init`` bounded by ``settings.init_timeout``; any failure there
   (timeout, refused key) also falls back.

A fallback logs ONE warning line naming the ``wandb sync`` command that uploads the offline run later. Keys are
never written anywhere: the server address in the warning is shown without any user:password part.
Nothing here is retrieval-specific: any kd job that logs to W&B can use it.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
import urllib.request
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.wandb.ai"
PROBE_TIMEOUT_S = 3.0
INIT_TIMEOUT_S = 30.0


def base_url() -> str:
    """The W&B server kd would talk to: ``WANDB_BASE_URL`` or the public one."""
    return os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL


def _host_port(url: str) -> tuple[str | None, int]:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def display_url(url: str) -> str:
    """``url`` reduced to scheme://host[:port]: no credentials, path or query end up in a log."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    host = parts.hostname or "?"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}"


def server_reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True when a TCP connection to ``url``'s host and port (or to the proxy that would carry it) opens within
    ``timeout`` seconds, name lookup included (it runs in a daemon thread, since lookups ignore socket timeouts)."""
    host, port = _host_port(url)
    if not host:
        return False
    scheme = urlsplit(url if "://" in url else f"http://{url}").scheme
    proxy = urllib.request.getproxies().get(scheme)
    if proxy and not _loopback(host) and not urllib.request.proxy_bypass(host):
        host, port = _host_port(proxy)
        if not host:
            return False
    opened: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                opened.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=attempt, name="kd-wandb-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(opened)


def _loopback(host: str) -> bool:
    """Loopback hosts never go through a proxy (as in wandb's Go core, which follows Go's proxy rules)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def sync_command(save_dir: str | os.PathLike, run_id: str) -> str:
    """The command that uploads the offline run ``run_id`` written under ``save_dir`` (all its resumed parts)."""
    return f"wandb sync {Path(save_dir) / 'wandb'}/offline-run-*-{run_id}"


def start_wandb_logger(make: Callable[..., Any], *, offline: bool, save_dir: str | os.PathLike, run_id: str,
                       probe_timeout: float = PROBE_TIMEOUT_S, init_timeout: float = INIT_TIMEOUT_S) -> Any:
    """A ``WandbLogger`` that is offline, or online with its run already started; never a hang.

    ``make(**overrides)`` builds the logger (e.g. Hydra's ``instantiate(cfg.logger, **overrides)``); it is called
    with ``offline=True``, or with ``offline=False`` and ``settings=wandb.Settings(init_timeout=init_timeout)``.
    """
    if offline:
        return make(offline=True)
    url = base_url()
    if not server_reachable(url, probe_timeout):
        return _fallback(make, f"{display_url(url)} is not reachable (no connection within {probe_timeout:g} s)",
                         save_dir, run_id)
    import wandb

    logger = make(offline=False, settings=wandb.Settings(init_timeout=float(init_timeout)))
    try:
        logger.experiment  # noqa: B018 - starts the run now (rank 0 only), bounded by init_timeout
    except Exception as error:  # noqa: BLE001 - whatever stops W&B must not stop training
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        key = os.environ.get("WANDB_API_KEY")
        if key:
            first_line = first_line.replace(key, "***")
        return _fallback(make, f"starting the run on {display_url(url)} failed ({type(error).__name__}: "
                               f"{first_line})", save_dir, run_id)
    return logger


def _fallback(make: Callable[..., Any], reason: str, save_dir: str | os.PathLike, run_id: str) -> Any:
    log.warning("W&B: %s; logging this run offline instead, upload it later with: %s",
                reason, sync_command(save_dir, run_id))
    return make(offline=True)
