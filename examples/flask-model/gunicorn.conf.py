"""gunicorn settings: one sync worker on $HOST:$PORT (defaults 0.0.0.0:5000), logs on stdout.

One sync worker computes one request at a time and closes each connection after its answer, so an
idle keep-alive client can never hold the only worker: the orchestrator gives each container one
request at a time and queues the rest itself. On SIGTERM (docker stop) gunicorn lets the request
in progress finish, then exits 0. A model that fails to load stops gunicorn (exit 3) with its traceback.
"""

import os

_port = os.environ.get("PORT", "5000")
if not _port.isdigit() or not 0 < int(_port) < 65536:
    raise SystemExit(f"PORT must be an integer from 1 to 65535; got {_port!r}")
_host = os.environ.get("HOST", "0.0.0.0")

bind = f"[{_host}]:{_port}" if ":" in _host else f"{_host}:{_port}"
workers = 1
worker_class = "sync"
accesslog = "-"
errorlog = "/dev/stdout"


def worker_exit(server, worker):
    # Python's own teardown of numpy, scipy and scikit-learn takes seconds on a small machine, and
    # docker stop waits for it. A worker told to stop has answered its last request: leave at once.
    if worker.booted and not worker.alive:
        os._exit(0)
