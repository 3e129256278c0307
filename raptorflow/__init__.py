"""RaptorFlow: the CLI, the single-process runner and the demo."""
