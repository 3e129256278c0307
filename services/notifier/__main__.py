"""`python -m services.notifier`: run the webhook notifier against REDIS_URL."""

from services.notifier.app import build
from shared.app.entry import run_service

run_service("notifier", build)
