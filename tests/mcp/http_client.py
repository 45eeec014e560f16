"""Drives `sre-operator run --mcp-addr` over streamable HTTP with the official Python MCP SDK, as
an MCP client would, with Kubernetes bearer tokens of three people: a viewer, an approver, and a
stranger the cluster knows but who holds no role.

Usage: http_client.py URL NAMESPACE REPORT POD VIEWER_TOKEN APPROVER_TOKEN STRANGER_TOKEN.
host/tests/mcp_http_e2e.rs runs it in the virtualenv with the pinned `mcp`; it exits non-zero on
the first check that fails, naming it. Its last line is a JSON object of figures (the median
latency of a WASM tool call over HTTP).
"""

import asyncio
import contextlib
import json
import statistics
import sys
import time

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError


def check(condition, what):
    if not condition:
        raise SystemExit(f"FAILED: {what}")


def text(result):
    return "".join(getattr(c, "text", "") for c in result.content)


@contextlib.asynccontextmanager
async def session_as(url, token):
    """An initialized MCP session as the holder of `token`."""
    headers = {"Authorization": f"Bearer {token}"}
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


async def raw(url, body, token=None, content_type="application/json"):
    headers = {"Content-Type": content_type, "Accept": "application/json, text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with httpx2.AsyncClient(timeout=30) as client:
        return await client.post(url, content=body, headers=headers)


async def main(url, namespace, report, pod, viewer, approver, stranger):
    # No token, and a token the cluster does not know: refused before anything runs.
    initialize = json.dumps({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "raw", "version": "0"}},
    })
    response = await raw(url, initialize)
    check(response.status_code == 401, f"no token: 401, got {response.status_code}")
    check(response.headers.get("www-authenticate", "").lower().startswith("bearer"),
          "a 401 names the Bearer scheme")
    response = await raw(url, initialize, token="not-a-token")
    check(response.status_code == 401 and "not valid" in response.text,
          f"a forged token: 401 naming why, got {response.status_code} {response.text[:200]}")

    # Malformed, oversized and unknown: answered, and the server keeps serving.
    response = await raw(url, b"{not json", token=viewer)
    check(400 <= response.status_code < 500, f"malformed JSON: a 4xx, got {response.status_code}")
    response = await raw(url, b"[" + b" " * (2 << 20) + b"]", token=viewer)
    check(response.status_code == 413, f"a 2 MiB message: 413, got {response.status_code}")

    async with session_as(url, viewer) as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        for name in ["inspect_object", "fetch_logs", "list_reports", "get_report",
                     "diagnose", "approve_report", "reject_report"]:
            check(name in tools, f"tools/list names {name}: {sorted(tools)}")

        # A WASM tool on the live cluster, scoped to the namespace the viewer may read.
        latencies = []
        for _ in range(20):
            started = time.perf_counter()
            result = await session.call_tool(
                "inspect_object", {"namespace": namespace, "kind": "Pod", "name": pod})
            latencies.append(time.perf_counter() - started)
            check(not result.is_error and pod in text(result),
                  f"inspect_object answers the viewer: {text(result)[:300]}")
        # ... but not in a namespace where they may not read Pods.
        result = await session.call_tool(
            "inspect_object", {"namespace": "kube-system", "kind": "Pod", "name": pod})
        check(result.is_error and "may not get pods" in text(result),
              f"a namespace the viewer cannot read is refused: {text(result)[:300]}")

        try:
            result = await session.call_tool("no_such_tool", {"namespace": namespace})
            check(result.is_error, "an unknown tool is an error")
        except MCPError as e:
            check("no_such_tool" in str(e), f"the error names the tool: {e}")

        result = await session.call_tool("list_reports", {"namespace": namespace})
        listed = json.loads(text(result))
        check(any(r["name"] == report for r in listed), f"list_reports shows {report}: {listed}")
        result = await session.call_tool("get_report", {"namespace": namespace, "name": report})
        check(not result.is_error, f"get_report answers: {text(result)[:300]}")
        detail = json.loads(text(result))
        digest = detail["patchDigest"]
        check(digest and detail["phase"] == "AwaitingApproval",
              f"the report awaits approval with a patch: {detail['phase']}")
        contents = await session.read_resource(f"report://{namespace}/{report}")
        check(report in contents.contents[0].text, "the report is a resource")

        # A viewer cannot approve: refused by the SubjectAccessReview, nothing written.
        result = await session.call_tool(
            "approve_report", {"namespace": namespace, "name": report, "digest": digest})
        check(result.is_error and "may not patch diagnosticreports" in text(result),
              f"the viewer's approve is refused: {text(result)[:300]}")

    # Someone the cluster knows but who holds no role sees nothing.
    async with session_as(url, stranger) as session:
        result = await session.call_tool("list_reports", {"namespace": namespace})
        check(result.is_error and "may not list diagnosticreports" in text(result),
              f"a stranger cannot list reports: {text(result)[:300]}")

    # The approver's approve is recorded (the decision is theirs in the audit log).
    async with session_as(url, approver) as session:
        result = await session.call_tool(
            "approve_report", {"namespace": namespace, "name": report, "digest": "sha256:" + "0" * 64})
        check(result.is_error, f"an approve pinned to another digest fails: {text(result)[:300]}")
        result = await session.call_tool(
            "approve_report", {"namespace": namespace, "name": report, "digest": digest})
        check(not result.is_error, f"the approver's approve is recorded: {text(result)[:300]}")
        result = await session.call_tool("get_report", {"namespace": namespace, "name": report})
        check(json.loads(text(result))["spec"].get("decision") == "Approved",
              "the report now says Approved")

    print(json.dumps({
        "tool_call_median_ms": round(statistics.median(latencies) * 1000, 2),
        "tool_call_p90_ms": round(sorted(latencies)[int(len(latencies) * 0.9) - 1] * 1000, 2),
    }))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:8]))
