"""`python -m services.corrector`: run the corrector service against REDIS_URL."""

from raptorflow.launcher import main

main("corrector")
