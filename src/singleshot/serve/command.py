"""``singleshot serve``: load the weights, build the application and run it on uvicorn."""

from __future__ import annotations

import ipaddress
import os
import sys

import torch
import uvicorn

from singleshot.cpu import cpu_features
from singleshot.predict import Detector
from singleshot.serve.app import ServeConfig, create_app

#: Environment variable read for the API key when ``--api-key`` is not given (keeps it out of the process list).
API_KEY_ENV = "SINGLESHOT_API_KEY"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def run(config: ServeConfig) -> None:
    """Serve ``config.weights`` on ``config.host:config.port`` until interrupted (see :mod:`singleshot.serve.app`)."""
    config.validate()
    if config.api_key is None and os.environ.get(API_KEY_ENV):
        config.api_key = os.environ[API_KEY_ENV]
    if not is_loopback(config.host) and config.api_key is None:
        print(
            f"singleshot serve: WARNING: listening on {config.host} without an API key: anyone who can reach this "
            f"port can use the model; pass --api-key (or set ${API_KEY_ENV})",
            file=sys.stderr,
            flush=True,
        )
    threads = config.threads or cpu_features().physical_cores
    torch.set_num_threads(threads)  # here for loading; the batcher's thread sets it for itself too
    detector = Detector.from_weights(
        config.weights, config.device, backend=config.backend, precision=config.precision, threads=threads
    )
    app = create_app(detector, config)
    if detector.choice is not None:
        print(detector.choice.describe(), flush=True)
    print(
        f"singleshot serve: {detector.name} ({detector.runtime} {detector.precision} on {detector.device}, {threads} "
        "threads), classes "
        f"{', '.join(detector.names)}; page and API on http://{config.host}:{config.port}/"
        + (" (API key required)" if config.api_key else ""),
        flush=True,
    )
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", access_log=False)
