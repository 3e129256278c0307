"""`python -m services.notifier`: run the webhook notifier against REDIS_URL."""

from raptorflow.launcher import main

main("notifier")
