"""The built-in agent runner: serves llm and http agents on the AgentInvoked stream."""
