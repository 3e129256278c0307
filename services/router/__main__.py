"""`python -m services.router`: run the router service against REDIS_URL."""

from services.router.app import build
from shared.app.entry import run_service

run_service("router", build)
