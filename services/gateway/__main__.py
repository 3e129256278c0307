"""`python -m services.gateway`: run the gateway service against REDIS_URL."""

from services.gateway.server import serve
from shared.app.entry import run_server

run_server("gateway", serve)
