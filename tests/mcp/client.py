"""Drives `sre-operator mcp --dump DIR` over stdio with the official Python MCP SDK, as an MCP
client (Claude Desktop, an IDE) would, and checks what a user of it relies on.

Usage: client.py SRE_OPERATOR_BINARY DUMP_DIR. host/tests/mcp.rs runs it in a virtualenv with a
pinned `mcp`; it exits non-zero on the first check that fails, naming it. Its last line is a JSON
object of figures (the median latency of a WASM tool call).
"""

import asyncio
import json
import statistics
import sys
import time

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

POD = "critical-app-7d4b9c6f5-h8x2m"


def check(condition, what):
    if not condition:
        raise SystemExit(f"FAILED: {what}")


def text(result):
    return "".join(getattr(c, "text", "") for c in result.content)


async def main(binary, dump):
    server = StdioServerParameters(command=binary, args=["mcp", "--dump", dump])
    async with stdio_client(server) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()

            tools = {t.name: t for t in (await session.list_tools()).tools}
            for name in ["inspect_object", "fetch_logs", "list_reports", "get_report",
                         "diagnose", "approve_report", "reject_report"]:
                check(name in tools, f"tools/list names {name}: {sorted(tools)}")
            check("namespace" in tools["fetch_logs"].input_schema.get("required", []),
                  "a WASM tool's schema requires `namespace`")

            # A WASM tool on the bundled dump, scoped to the namespace given.
            result = await session.call_tool(
                "inspect_object", {"namespace": "default", "kind": "Pod", "name": POD})
            check(not result.is_error, f"inspect_object answers: {text(result)[:300]}")
            check(POD in text(result), "inspect_object returns the Pod")

            # Scoping: the same Pod is not in another namespace.
            result = await session.call_tool(
                "inspect_object", {"namespace": "billing", "kind": "Pod", "name": POD})
            check(POD not in text(result) or result.is_error,
                  "a read scoped to billing does not return default's Pod")

            # Bad arguments are answers, not crashes: the tool's schema, then the name rules.
            result = await session.call_tool("fetch_logs", {"namespace": "default"})
            check(result.is_error and "pod" in text(result),
                  f"a missing required argument is refused: {text(result)}")
            result = await session.call_tool(
                "inspect_object", {"namespace": "../kube-system", "kind": "Pod", "name": POD})
            check(result.is_error and "namespace" in text(result),
                  f"an invalid namespace is refused: {text(result)}")
            result = await session.call_tool("inspect_object", {"kind": "Pod", "name": POD})
            check(result.is_error and "namespace" in text(result),
                  f"a missing namespace is refused: {text(result)}")

            # An unknown tool: an error, and the server keeps serving.
            try:
                result = await session.call_tool("no_such_tool", {"namespace": "default"})
                check(result.is_error, "an unknown tool is an error")
            except MCPError as e:
                check("no_such_tool" in str(e), f"the error names the tool: {e}")

            # No report before diagnose on a dump.
            result = await session.call_tool("list_reports", {})
            check(json.loads(text(result)) == [], f"no reports before diagnose: {text(result)}")

            result = await session.call_tool("diagnose", {"namespace": "default", "pod": POD})
            check(not result.is_error, f"diagnose answers: {text(result)[:300]}")
            diagnosed = json.loads(text(result))
            check(len(diagnosed["reports"]) == 1, f"diagnose of one Pod makes one report: {diagnosed}")
            report = diagnosed["reports"][0]
            check(report["spec"]["failure"]["class"] == "CrashLoopBackOff",
                  f"the report's class: {report['spec']['failure']}")
            check(report["reasoningChain"], "the report has a reasoning chain")

            listed = json.loads(text(await session.call_tool("list_reports", {"namespace": "default"})))
            check([r["name"] for r in listed] == [report["name"]], f"list_reports: {listed}")

            got = await session.call_tool("get_report", {"namespace": "default", "name": report["name"]})
            detail = json.loads(text(got))
            check(detail["findings"]["rootCause"], f"get_report has findings: {detail['findings']}")
            check(detail["patchDigest"] is None or detail["patchDigest"].startswith("sha256:"),
                  f"the patch digest: {detail['patchDigest']}")

            resources = (await session.list_resources()).resources
            uris = [str(r.uri) for r in resources]
            check(listed[0]["uri"] in uris, f"the report is a resource: {uris}")
            contents = (await session.read_resource(listed[0]["uri"])).contents
            check(json.loads(contents[0].text)["name"] == report["name"], "the resource is the report")
            try:
                await session.read_resource("report://default/no-such-report")
                check(False, "an unknown report resource is an error")
            except MCPError as e:
                check("not found" in str(e), f"the error says not found: {e}")

            result = await session.call_tool("get_report", {"namespace": "default", "name": "a/../b"})
            check(result.is_error and "DiagnosticReport name" in text(result),
                  f"an invalid report name is refused: {text(result)}")

            result = await session.call_tool(
                "approve_report",
                {"namespace": "default", "name": report["name"], "digest": "sha256:00"})
            check(result.is_error and "dump" in text(result),
                  f"approving on a dump is a clear error: {text(result)}")

            # Latency of one WASM tool call over stdio: the median of 20.
            times = []
            for _ in range(20):
                started = time.perf_counter()
                await session.call_tool("check_service", {"namespace": "default", "name": "redis"})
                times.append(time.perf_counter() - started)
            print(json.dumps({"stdio_tool_call_median_ms": round(statistics.median(times) * 1000, 2)}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
