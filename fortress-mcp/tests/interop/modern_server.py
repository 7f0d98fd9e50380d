"""A modern-era (2026-07-28) MCP server built with the official Python SDK, used as an
upstream by the fortress-mcp interop tests.

    python modern_server.py stdio
    python modern_server.py http PORT
"""

import sys
from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer, Resolve, Sample
from mcp_types import CreateMessageResult, SamplingMessage, TextContent

server = MCPServer("modern-demo", instructions="A small modern-era test server.")


@server.tool()
def echo(message: str) -> str:
    """Echoes the message back."""
    return f"Echo: {message}"


@server.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@server.tool()
async def slow(steps: int, ctx: Context) -> str:
    """Reports progress for each step, then finishes."""
    for i in range(1, steps + 1):
        await ctx.report_progress(i, steps, f"step {i}")
    return f"done after {steps} steps"


def ask_llm(prompt: str) -> Sample:
    return Sample(
        [SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
        max_tokens=50,
    )


@server.tool()
async def sample(prompt: str, answer: Annotated[CreateMessageResult, Resolve(ask_llm)]) -> str:
    """Asks the client's LLM (sampling) and returns what it said."""
    return f"LLM said: {answer.content.text}"


@server.resource("greeting://world")
def greeting() -> str:
    """A greeting."""
    return "Hello, world"


@server.prompt()
def greet(name: str) -> str:
    """Asks to greet someone."""
    return f"Please greet {name} warmly."


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
