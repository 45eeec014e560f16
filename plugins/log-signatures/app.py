"""`log-signatures`: a `tool` plugin in Python (componentize-py) that reads a container's log
through the host's `cluster` interface and matches it against a catalogue of well-known failure
signatures (signatures.py).

Settings (all optional):

    {"extraSignatures": [{"id": "ledger-lock", "pattern": "could not obtain lock on (?P<table>\\w+)",
                          "likelyCause": "Another job holds {table}.", "nextCheck": "list_events(kind=\\"Pod\\", name=\\"{pod}\\")"}]}

Built with `plugins/build-polyglot.sh`; see docs/plugins.md.
"""

import json
import sys

import wit_world
from componentize_py_types import Err
from wit_world.imports import cluster
from wit_world.imports.types import (
    ToolError_Failed,
    ToolError_InvalidArguments,
    ToolError_UnknownTool,
    ToolSpec,
)

import signatures

TOOL = "match_log_signatures"
DEFAULT_LINES = 200
MAX_LINES = 1000

PARAMETERS = {
    "type": "object",
    "required": ["pod"],
    "additionalProperties": False,
    "properties": {
        "pod": {"type": "string", "minLength": 1, "maxLength": 253, "description": "Pod name"},
        "container": {
            "type": "string",
            "minLength": 1,
            "maxLength": 253,
            "description": "Container name; defaults to the Pod's first container",
        },
        "previous": {
            "type": "boolean",
            "default": True,
            "description": "Read the previous, terminated instance (what a crash-looping container "
            "printed before it died); falls back to the current log when there is none",
        },
        "lines": {"type": "integer", "minimum": 1, "maximum": MAX_LINES, "default": DEFAULT_LINES},
    },
}

DESCRIPTION = (
    "Match a container's recent log lines against a catalogue of well-known failure signatures "
    "(JVM out of memory and heap settings, Go panics, Node ECONNREFUSED/EADDRINUSE, Python "
    "tracebacks and missing modules, PostgreSQL/MySQL authentication and connection errors, TLS "
    "certificate errors, DNS failures, permission denied, connection refused to host:port, missing "
    "environment variables or config keys, exec format errors, commands not found, ...). Returns "
    "JSON {pod, container, previous, linesScanned, matches: [{signature, evidence, host, port, "
    "path, heap, ..., likelyCause, nextCheck, nextTool, line, count}]}, newest match first."
)

# Settings accepted by configure; the host calls configure on every fresh instance.
_extras = []


def _bad_arguments(message):
    return Err(ToolError_InvalidArguments(message))


def _arguments(text):
    try:
        args = json.loads(text)
    except ValueError as e:
        raise _bad_arguments(f"arguments are not JSON: {e}")
    if not isinstance(args, dict):
        raise _bad_arguments("arguments must be a JSON object")
    unknown = sorted(set(args) - set(PARAMETERS["properties"]))
    if unknown:
        raise _bad_arguments(f"unknown argument(s): {', '.join(unknown)}")
    pod = args.get("pod")
    if not isinstance(pod, str) or not pod:
        raise _bad_arguments("`pod` (a non-empty string) is required")
    container = args.get("container")
    if container is not None and (not isinstance(container, str) or not container):
        raise _bad_arguments("`container` must be a non-empty string")
    previous = args.get("previous", True)
    if not isinstance(previous, bool):
        raise _bad_arguments("`previous` must be true or false")
    lines = args.get("lines", DEFAULT_LINES)
    if isinstance(lines, bool) or not isinstance(lines, int) or not 1 <= lines <= MAX_LINES:
        raise _bad_arguments(f"`lines` must be an integer from 1 to {MAX_LINES}")
    return pod, container, previous, lines


def _host_error(error):
    kind = type(error).__name__.rsplit("_", 1)[-1]
    labels = {"NotFound": "not found", "Forbidden": "forbidden", "TooLarge": "too large"}
    label = labels.get(kind)
    return f"{label}: {error.value}" if label else str(error.value)


def _read_log(pod, container, previous, lines):
    """The log text and a note; falls back to the current log when there is no previous one."""
    request = cluster.LogRequest(pod=pod, container=container, previous=previous, tail_lines=lines)
    try:
        return cluster.logs(request), previous, None
    except Err as e:
        if not previous:
            raise Err(ToolError_Failed(_host_error(e.value)))
        first = _host_error(e.value)
    request.previous = False
    try:
        text = cluster.logs(request)
    except Err as e:
        raise Err(ToolError_Failed(f"{first}; the current log: {_host_error(e.value)}"))
    return text, False, f"no log of a previous instance ({first}); matched the current log"


class WitWorld(wit_world.WitWorld):
    def configure(self, settings: str) -> None:
        global _extras
        try:
            value = json.loads(settings)
        except ValueError as e:
            raise Err(f"settings are not JSON: {e}")
        if not isinstance(value, dict):
            raise Err("settings must be a JSON object")
        unknown = sorted(set(value) - {"extraSignatures"})
        if unknown:
            raise Err(f"unknown setting(s) {', '.join(unknown)}; log-signatures takes extraSignatures")
        try:
            _extras = signatures.parse_extra_signatures(value.get("extraSignatures", []))
        except ValueError as e:
            raise Err(str(e))
        # On stderr, which the host writes to the operator's log.
        for warning in signatures.slow_pattern_warnings(_extras):
            print(f"log-signatures: {warning}", file=sys.stderr)

    def describe(self) -> list:
        return [ToolSpec(name=TOOL, description=DESCRIPTION, parameters=json.dumps(PARAMETERS))]

    def invoke(self, name: str, arguments: str) -> str:
        if name != TOOL:
            raise Err(ToolError_UnknownTool(name))
        try:
            return _invoke(arguments)
        except Err:
            raise
        except Exception as e:  # a bug here: say so rather than trap
            raise Err(ToolError_Failed(f"log-signatures failed: {type(e).__name__}: {e}"))


def _invoke(arguments):
    pod, container, previous, lines = _arguments(arguments)
    text, used_previous, note = _read_log(pod, container, previous, lines)
    log_lines = text.splitlines()
    # The host prefixes what the reader should know as `# note: ...` lines.
    notes = [note] if note else []
    while log_lines and log_lines[0].startswith("# note: "):
        notes.append(log_lines.pop(0)[len("# note: "):])
    matches = signatures.match_lines(log_lines, pod, _extras)
    answer = {
        "pod": pod,
        "container": container,
        "previous": used_previous,
        "linesScanned": len(log_lines),
    }
    if notes:
        answer["notes"] = notes
    if not matches:
        answer["summary"] = f"no known failure signature in the last {len(log_lines)} lines"
    answer["matches"] = matches
    return json.dumps(answer, indent=1, ensure_ascii=False)
