"""`python -m services.selector`: run the selector service against REDIS_URL."""

from services.selector.app import build
from shared.app.entry import run_service

run_service("selector", build)
