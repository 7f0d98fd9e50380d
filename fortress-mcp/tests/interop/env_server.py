"""A minimal legacy-era stdio MCP server that tells who it runs for.

Its one tool, `whoami`, answers with the part of $SERVICE_TOKEN before the first `-` (the
tests use tokens like `alice-CANARY-…`), so a test can see which credential the process was
started with without the credential itself ever appearing in an answer.
"""

import json
import os
import sys

who = os.environ.get("SERVICE_TOKEN", "nobody").split("-")[0] or "nobody"

for line in sys.stdin:
    message = json.loads(line)
    if "id" not in message or "method" not in message:
        continue
    method = message["method"]
    if method == "initialize":
        answer = {"result": {
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "env-server", "version": "1"},
        }}
    elif method == "tools/list":
        answer = {"result": {"tools": [{"name": "whoami", "inputSchema": {"type": "object"}}]}}
    elif method == "tools/call":
        answer = {"result": {"content": [{"type": "text", "text": "you are " + who}]}}
    else:
        answer = {"error": {"code": -32601, "message": "method not found: " + method}}
    answer.update({"jsonrpc": "2.0", "id": message["id"]})
    print(json.dumps(answer), flush=True)
