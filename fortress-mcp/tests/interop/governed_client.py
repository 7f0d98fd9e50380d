"""Runs governance scenarios against a governed fortress-mcp with the official Python SDK
client and prints what it saw as JSON.

    python governed_client.py --mode legacy|2026-07-28 [--token T] URL STEP [ARGS...]

Steps:
    list                       tool names
    wait-tools NAME...         list until exactly NAME... are visible (10 s deadline)
    call NAME JSON             one tool call: its result or its error
    wait-refused NAME JSON TEXT  call until the error mentions TEXT (10 s deadline)
    scenario                   the main governance scenario (see the Rust test)
"""

import argparse
import json
import sys
import time

import anyio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def dump(model):
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


async def call(client, name, arguments):
    try:
        result = await client.call_tool(name, arguments)
        return {"result": dump(result)}
    except Exception as e:  # the SDK raises on JSON-RPC errors
        return {"error": str(e)}


async def names(client):
    return sorted(t.name for t in (await client.list_tools()).tools)


async def run(args):
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    transport = streamable_http_client(args.url, http_client=create_mcp_http_client(headers=headers))
    async with Client(transport, mode=args.mode, cache=None, read_timeout_seconds=30) as client:
        out = {}
        if args.step == "list":
            out["tools"] = await names(client)
        elif args.step == "wait-tools":
            deadline = time.monotonic() + 10
            while True:
                out["tools"] = await names(client)
                if out["tools"] == sorted(args.rest) or time.monotonic() > deadline:
                    break
                await anyio.sleep(0.1)
        elif args.step == "call":
            out = await call(client, args.rest[0], json.loads(args.rest[1]))
        elif args.step == "wait-refused":
            deadline = time.monotonic() + 10
            while True:
                out = await call(client, args.rest[0], json.loads(args.rest[1]))
                if args.rest[2] in out.get("error", "") or time.monotonic() > deadline:
                    break
                await anyio.sleep(0.1)
        elif args.step == "scenario":
            out["tools"] = await names(client)
            out["delete"] = await call(client, "crm__delete_account", {"customer": "c-1"})
            out["small_refund"] = await call(client, "crm__refund", {"amount": 50})
            out["large_refund"] = await call(client, "crm__refund", {"amount": 500})
            out["lookup"] = await call(client, "crm__lookup", {"customer": "c-1"})
    print(json.dumps(out, sort_keys=True))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", required=True)
    parser.add_argument("--token")
    parser.add_argument("url")
    parser.add_argument("step")
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    anyio.run(run, parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
