"""`python -m services.memory`: run the memory service against REDIS_URL."""

from services.memory.app import build
from shared.app.entry import run_service

run_service("memory", build)
