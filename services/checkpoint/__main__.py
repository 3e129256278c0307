"""`python -m services.checkpoint`: run the checkpoint service against REDIS_URL."""

from raptorflow.launcher import main

main("checkpoint")
