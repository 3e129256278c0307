"""`python -m services.gateway`: run the gateway service against REDIS_URL."""

from raptorflow.launcher import main

main("gateway")
