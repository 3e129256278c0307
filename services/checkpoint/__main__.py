"""`python -m services.checkpoint`: run the checkpoint service against REDIS_URL."""

from services.checkpoint.app import build
from shared.app.entry import run_service

run_service("checkpoint", build)
