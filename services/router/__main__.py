"""`python -m services.router`: run the router service against REDIS_URL."""

from raptorflow.launcher import main

main("router")
