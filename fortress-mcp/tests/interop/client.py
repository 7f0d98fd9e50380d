"""Runs one MCP scenario with the official Python SDK client and prints what it saw as JSON.

    python client.py --mode legacy|2026-07-28 --scenario everything|modern URL
    python client.py --mode ... --scenario ... --stdio COMMAND [ARGS...]

The fortress-mcp interop tests run it against an upstream directly and through Fortress and
compare the two outputs.
"""

import argparse
import json
import sys

import anyio
import mcp_types as types
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters

SCENARIOS = {
    "everything": {
        "echo": ("echo", {"message": "hello fortress"}),
        "progress": ("trigger-long-running-operation", {"duration": 0.2, "steps": 3}),
        "sampling": ("trigger-sampling-request", {"prompt": "capital of France?", "maxTokens": 20}),
        "prompt": ("simple-prompt", None),
    },
    "modern": {
        "echo": ("echo", {"message": "hello fortress"}),
        "progress": ("slow", {"steps": 3}),
        "sampling": ("sample", {"prompt": "capital of France?"}),
        "prompt": ("greet", {"name": "Ada"}),
    },
}


def dump(model):
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def clean(value):
    """Drops what legitimately differs per connection (cache hints, server identity)."""
    if isinstance(value, dict):
        return {
            k: clean(v)
            for k, v in value.items()
            if k not in ("_meta", "ttlMs", "cacheScope", "resultType", "nextCursor")
        }
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value


async def sampling_callback(context, params):
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text="Paris (sampled by the test client)"),
        model="test-model",
        stop_reason="endTurn",
    )


async def elicitation_callback(context, params):
    return types.ElicitResult(action="decline")


async def list_roots_callback(context):
    return types.ListRootsResult(roots=[])


async def all_pages(fetch, key):
    items, cursor, pages = [], None, 0
    while True:
        page = await fetch(cursor=cursor)
        items.extend(getattr(page, key))
        pages += 1
        cursor = page.next_cursor
        if not cursor or pages > 50:
            return items, pages


async def run(args):
    if args.stdio:
        target = StdioServerParameters(command=args.target, args=args.rest)
    elif args.sse:
        # The deprecated 2024-11-05 HTTP+SSE transport.
        target = sse_client(args.target)
    else:
        target = args.target
    scenario = SCENARIOS[args.scenario]
    out = {}
    async with Client(
        target,
        mode=args.mode,
        sampling_callback=sampling_callback,
        elicitation_callback=elicitation_callback,
        list_roots_callback=list_roots_callback,
        cache=None,
        read_timeout_seconds=30,
    ) as client:
        tools, out["tool_pages"] = await all_pages(client.list_tools, "tools")
        out["tools"] = sorted((clean(dump(t)) for t in tools), key=lambda t: t["name"])
        name, arguments = scenario["echo"]
        out["echo"] = clean(dump(await client.call_tool(name, arguments)))

        progress = []

        async def on_progress(value, total, message):
            progress.append([value, total])

        name, arguments = scenario["progress"]
        out["progress_result"] = clean(dump(await client.call_tool(name, arguments, progress_callback=on_progress)))
        out["progress"] = progress

        if not args.skip_sampling:
            name, arguments = scenario["sampling"]
            out["sampling"] = clean(dump(await client.call_tool(name, arguments)))

        resources, out["resource_pages"] = await all_pages(client.list_resources, "resources")
        out["resources"] = [clean(dump(r)) for r in resources]
        if resources:
            out["read"] = clean(dump(await client.read_resource(str(resources[0].uri))))

        prompts, _ = await all_pages(client.list_prompts, "prompts")
        out["prompts"] = sorted((clean(dump(p)) for p in prompts), key=lambda p: p["name"])
        name, arguments = scenario["prompt"]
        out["prompt"] = clean(dump(await client.get_prompt(name, arguments)))
    print(json.dumps(out, sort_keys=True))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", required=True)
    parser.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    parser.add_argument("--stdio", action="store_true")
    parser.add_argument("--sse", action="store_true")
    parser.add_argument("--skip-sampling", action="store_true")
    parser.add_argument("target")
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    anyio.run(run, args)


if __name__ == "__main__":
    sys.exit(main())
