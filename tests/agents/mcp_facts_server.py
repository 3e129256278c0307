"""A tiny MCP server over stdio (official `mcp` SDK) whose one tool the tests' llm agents call."""

from mcp.server.mcpserver import MCPServer

server = MCPServer("facts")


@server.tool()
def lookup(query: str) -> str:
    """Facts about a topic."""
    return f"FACT: {query} grew 40% last year (source: test MCP server)"


if __name__ == "__main__":
    server.run("stdio")
