"""`python -m services.corrector`: run the corrector service against REDIS_URL."""

from services.corrector.app import build
from shared.app.entry import run_service

run_service("corrector", build)
