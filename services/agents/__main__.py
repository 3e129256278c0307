"""`python -m services.agents`: run the built-in agent runner against REDIS_URL."""

from services.agents.app import build
from shared.app.entry import run_service

run_service("agents", build)
