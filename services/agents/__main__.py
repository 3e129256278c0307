"""`python -m services.agents`: run the built-in agent runner against REDIS_URL."""

from raptorflow.launcher import main

main("agents")
