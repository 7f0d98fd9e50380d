"""A tiny legacy-era stdio MCP server (plain JSON-RPC, standard library only) whose tools
misbehave on purpose: `crash` kills the process, `hang` never answers, `pid` says who it is."""

import json
import os
import sys


def reply(id_, result=None, error=None):
    message = {"jsonrpc": "2.0", "id": id_}
    if error is not None:
        message["error"] = error
    else:
        message["result"] = result
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    message = json.loads(line)
    method, id_ = message.get("method"), message.get("id")
    if id_ is None:
        continue
    if method == "initialize":
        reply(id_, {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                    "serverInfo": {"name": "crashy", "version": "1"}})
    elif method == "tools/list":
        reply(id_, {"tools": [{"name": n, "inputSchema": {"type": "object"}} for n in ("pid", "crash", "hang")]})
    elif method == "tools/call":
        name = message["params"]["name"]
        if name == "crash":
            os._exit(3)
        elif name == "pid":
            reply(id_, {"content": [{"type": "text", "text": str(os.getpid())}]})
    else:
        reply(id_, error={"code": -32601, "message": "Method not found"})
