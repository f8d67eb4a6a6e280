"""`guard serve`: the guard as a long-running HTTP service (extra `serve`).

    from guardcli import load_guard
    from guardcli.jobs.serve import BackgroundServer, ServeOptions, create_app

    app = create_app(load_guard("csam-guard"), ServeOptions(max_batch=16))
    with BackgroundServer(app) as url:
        ...  # POST {url}/v1/moderations

Nothing here imports Starlette or uvicorn until an app is created or served.
"""

from __future__ import annotations

from guardcli.jobs.serve.app import GuardService, ServeOptions, create_app
from guardcli.jobs.serve.server import BackgroundServer, bind, run

__all__ = ["BackgroundServer", "GuardService", "ServeOptions", "bind", "create_app", "run"]
