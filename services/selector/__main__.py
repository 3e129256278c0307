"""`python -m services.selector`: run the selector service against REDIS_URL."""

from raptorflow.launcher import main

main("selector")
