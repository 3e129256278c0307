"""`raptorflow service NAME`: one service against REDIS_URL, as `python -m services.NAME`."""

from __future__ import annotations

from shared.app.entry import run_server, run_service


def main(name: str) -> None:
    if name == "gateway":
        from services.gateway.server import serve

        run_server(name, serve)
        return
    from raptorflow.registry import STREAM_SERVICES

    run_service(name, STREAM_SERVICES[name])
