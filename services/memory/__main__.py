"""`python -m services.memory`: run the memory service against REDIS_URL."""

from raptorflow.launcher import main

main("memory")
