"""Code the services share, one subpackage per layer (see docs/architecture.md).

contract < domain < settings < observability < adapters (messaging | memory | llm) < stores < app;
`settings` is the one configuration model, read once at start-up and passed down.
Import-linter contracts in pyproject.toml keep the order.
"""
