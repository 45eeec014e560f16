"""The catalogue of well-known failure signatures and the matcher.

Pure Python, no WIT: `app.py` wires it to the host, and `test_signatures.py` runs it under a plain
CPython (`python3 -m unittest` in this folder).

Log text is untrusted data. It is only ever matched with the regular expressions below (each line
cut to MAX_LINE characters first, so that no line can make a pattern slow); nothing in it is
evaluated, formatted as a template or used as a pattern.
"""

import re

# Longest part of a line that is matched, and longest evidence returned.
MAX_LINE = 4096
MAX_EVIDENCE = 300
# Distinct matches returned at most (the newest are kept).
MAX_MATCHES = 40

ID_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")

# Timestamps and clock times look like host:port ("09:41:06"); they are blanked before host:port
# extraction.
_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"
    r"|\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b"
)
# host:port, where host is a DNS name, an IPv4 address or a bracketed IPv6 address.
_HOST_PORT = re.compile(
    r"(?<![\w.:-])"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|(?:\d{1,3}\.){3}\d{1,3}|[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*)"
    r":(?P<port>\d{1,5})(?!\d|:\d)"
)
_ABS_PATH = re.compile(r"(?<![\w.])(?P<path>/(?:[\w.@+-]+/)*[\w.@+-]*)")
_SIZE = re.compile(r"^(\d+)([kKmMgGtT]?)$")
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def host_port(line):
    """The first plausible host:port in a line, as (host, port), or (None, None)."""
    blanked = _TIMESTAMP.sub(lambda m: " " * len(m.group(0)), line)
    for m in _HOST_PORT.finditer(blanked):
        host, port = m.group("host"), int(m.group("port"))
        if not 0 < port < 65536:
            continue
        if host.isdigit():
            continue
        return host.strip("[]"), port
    return None, None


def jvm_size_bytes(text):
    m = _SIZE.match(text)
    if not m:
        return None
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]


def service_name(host):
    """The Service a host name refers to: `redis`, `redis.cache`, `redis.cache.svc.cluster.local`."""
    if host is None or re.fullmatch(r"[\d.]+|[0-9A-Fa-f:]+", host):
        return None
    if host in ("localhost",):
        return None
    return host.split(".")[0]


def call(tool, **arguments):
    """A suggested tool call: `nextCheck` for people and models, `nextTool` for programs."""
    args = ", ".join(f"{k}={_quote(v)}" for k, v in arguments.items())
    return f"{tool}({args})", {"name": tool, "arguments": arguments}


def _quote(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _pod_check(ctx):
    return call("inspect_object", kind="Pod", name=ctx["pod"])


def _endpoint(fields):
    host, port = fields.get("host"), fields.get("port")
    if host and port:
        return f"{host}:{port}"
    return host or (f"port {port}" if port else "the target")


def _service_check(fields, ctx):
    name = service_name(fields.get("host"))
    if name:
        return call("check_service", name=name)
    if fields.get("host") in ("localhost", "127.0.0.1", "::1"):
        # A loopback target means a sidecar or the container itself.
        return _pod_check(ctx)
    return call("list_events", kind="Pod", name=ctx["pod"])


def _dns_cause(f, c):
    what = f"The name {f['host']} does not resolve" if "host" in f else "A host name does not resolve"
    if "reason" in f:
        what += f" ({f['reason']})"
    return (
        what + ": no Service of that name exists in the namespace, the name is misspelt, or "
        "cluster DNS is failing."
    )


def _postgres_cause(f, c):
    if "reason" in f:
        what = f["reason"]
    elif "database" in f:
        what = f"database {f['database']} does not exist"
    else:
        what = "the host name does not resolve"
    where = f" at {_endpoint(f)}" if "host" in f else ""
    return (
        f"The app cannot use its PostgreSQL database{where} ({what}): the database Service is "
        "missing or not ready, the host or database name is wrong, or the server is overloaded."
    )


def _refused_cause(f, c):
    svc = service_name(f.get("host"))
    if svc:
        why = f"the Service {svc} does not exist or has no ready endpoints"
    else:
        why = "the target process is not running"
    return (
        f"Nothing accepts connections on {_endpoint(f)}: {why}, the target listens on another "
        "port, or it is still starting."
    )


class Signature:
    """One failure signature: patterns tried in order on a line (the first that matches wins),
    fields taken from named groups (and from `extract`), and the cause and next check."""

    def __init__(self, id, needles, patterns, cause, next_check, extract=None):
        self.id = id
        # Lower-case words one of which a line must contain before any pattern is tried: cheap,
        # and it keeps the patterns away from lines they could only fail on slowly.
        self.needles = needles
        self.patterns = [re.compile(p) for p in patterns]
        self.cause = cause
        self.next_check = next_check
        self.extract = extract

    def match(self, line, lower=None):
        lower = line.lower() if lower is None else lower
        if not any(n in lower for n in self.needles):
            return None
        for pattern in self.patterns:
            m = pattern.search(line)
            if m:
                fields = {k: v for k, v in m.groupdict().items() if v is not None}
                if self.extract:
                    self.extract(line, fields)
                return fields
        return None

    def describe(self, fields, ctx):
        cause = self.cause(fields, ctx) if callable(self.cause) else self.cause
        check = self.next_check(fields, ctx)
        if isinstance(check, str):
            return cause, check, None
        return cause, check[0], check[1]


def _with_host_port(line, fields):
    if "port" in fields:
        fields["port"] = int(fields["port"])
    if "host" not in fields or "port" not in fields:
        host, port = host_port(line)
        if host is not None and "host" not in fields:
            fields["host"] = host
            fields.setdefault("port", port)


def _with_port(line, fields):
    if "port" in fields:
        fields["port"] = int(fields["port"])


def _with_heap(line, fields):
    heap = fields.get("heap")
    if heap:
        size = jvm_size_bytes(heap)
        if size:
            fields["heapBytes"] = size
    initial = re.search(r"-Xms(\d+[kKmMgGtT]?)\b", line)
    if initial:
        fields["initialHeap"] = initial.group(1)


def _with_path(line, fields):
    if "path" not in fields:
        m = _ABS_PATH.search(line)
        if m and len(m.group("path")) > 1:
            fields["path"] = m.group("path")


def _strip_quotes(key):
    def extract(line, fields):
        if key in fields:
            fields[key] = fields[key].strip("'\"`")

    return extract


def _chain(*extractors):
    def extract(line, fields):
        for e in extractors:
            e(line, fields)

    return extract


_HOST = r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*)"

# Specific signatures come before generic ones: a line is attributed to the first signature that
# matches it.
CATALOGUE = [
    Signature(
        "jvm-out-of-memory",
        ["outofmemoryerror"],
        [r"java\.lang\.OutOfMemoryError(?::\s*(?P<kind>[^\r\n]{1,120}))?"],
        lambda f, c: (
            f"The JVM ran out of memory ({f.get('kind', 'heap')}): the maximum heap (-Xmx) or "
            "metaspace is too small for the work, or the application leaks. The container may "
            "also be OOM-killed if -Xmx plus off-heap memory exceeds its memory limit."
        ),
        lambda f, c: _pod_check(c),
    ),
    Signature(
        "jvm-heap-settings",
        ["-xmx"],
        [r"-Xmx(?P<heap>\d+[kKmMgGtT]?)\b"],
        lambda f, c: (
            f"The JVM runs with a maximum heap of {f['heap']}. Heap plus metaspace, thread stacks "
            "and direct buffers must fit under the container's memory limit; if they do not, the "
            "kernel OOM-kills the process (exit code 137, reason OOMKilled) without any Java "
            "OutOfMemoryError in the log."
        ),
        lambda f, c: _pod_check(c),
        extract=_with_heap,
    ),
    Signature(
        "go-nil-pointer",
        ["nil pointer"],
        [r"panic: runtime error: invalid memory address or nil pointer dereference"],
        "A Go program dereferenced a nil pointer: often a missing setting or a failed "
        "dependency whose error was ignored. The goroutine trace after the panic names the "
        "function.",
        lambda f, c: call("fetch_logs", pod=c["pod"], previous=True, lines=200),
    ),
    Signature(
        "go-panic",
        ["panic: ", "fatal error: "],
        [
            r"^\s*panic: (?P<message>.{1,200})",
            r"^fatal error: (?P<message>.{1,200})",
        ],
        lambda f, c: f"A Go program panicked: {f['message']}. The stack trace after it names the "
        "function.",
        lambda f, c: call("fetch_logs", pod=c["pod"], previous=True, lines=200),
    ),
    Signature(
        "python-module-not-found",
        ["no module named"],
        [
            r"(?P<exception>ModuleNotFoundError|ImportError): No module named '?(?P<module>[\w.]+)'?",
        ],
        lambda f, c: f"The image lacks the Python module {f['module']}: missing from the "
        "requirements, installed for another Python version or virtualenv, or PYTHONPATH is "
        "wrong. A rebuilt image is the fix; no Kubernetes setting changes it.",
        lambda f, c: _pod_check(c),
    ),
    Signature(
        "postgres-auth-failed",
        ["password authentication failed", "pg_hba.conf"],
        [
            r"password authentication failed for user \"?(?P<user>[^\"\s]+)\"?",
            r"no pg_hba\.conf entry for host \"(?P<client>[^\"]+)\", user \"(?P<user>[^\"]+)\"(?:, database \"(?P<database>[^\"]+)\")?",
        ],
        lambda f, c: f"PostgreSQL refused the credentials of user {f.get('user', '?')}: the "
        "password in the Secret is stale or wrong, the app reads the wrong key, or pg_hba.conf "
        "does not admit this client.",
        lambda f, c: _pod_check(c),
    ),
    Signature(
        "postgres-connection-failed",
        ["connection to server at", "could not connect to server", "fatal:", "could not translate host name"],
        [
            r"connection to server at \"?(?P<host>[^\"\s,]+)\"? \([^)]*\), port (?P<port>\d+) failed: (?P<reason>.{1,120})",
            r"could not connect to server: (?P<reason>[^\r\n]{1,120})",
            r"FATAL:\s+database \"(?P<database>[^\"]+)\" does not exist",
            r"FATAL:\s+(?P<reason>sorry, too many clients already|the database system is starting up|the database system is shutting down)",
            r"could not translate host name \"(?P<host>[^\"]+)\" to address",
        ],
        _postgres_cause,
        lambda f, c: _service_check(f, c),
        extract=_with_port,
    ),
    Signature(
        "mysql-access-denied",
        ["access denied for user"],
        [
            r"Access denied for user '(?P<user>[^']*)'@'(?P<client>[^']*)'(?: \(using password: (?P<usingPassword>YES|NO)\))?",
        ],
        lambda f, c: f"MySQL refused user {f['user']}"
        + (" (no password was sent)" if f.get("usingPassword") == "NO" else "")
        + ": the password in the Secret is wrong or empty, or the user lacks a grant for this "
        "client host.",
        lambda f, c: _pod_check(c),
    ),
    Signature(
        "mysql-connection-failed",
        ["mysql server", "communications link failure"],
        [
            r"Can't connect to (?:local )?MySQL server on '(?P<host>[^':]+)(?::(?P<port>\d+))?'",
            r"Unknown MySQL server host '(?P<host>[^']+)'",
            r"Can't connect to local MySQL server through socket '(?P<path>[^']+)'",
            r"(?P<reason>Communications link failure)",
        ],
        lambda f, c: f"The app cannot reach MySQL{' at ' + _endpoint(f) if 'host' in f else ''}: "
        "the database Service is missing, has no ready endpoints, or the host name is wrong.",
        lambda f, c: _service_check(f, c),
        extract=_with_port,
    ),
    Signature(
        "redis-auth-failed",
        ["noauth", "wrongpass"],
        [r"(?P<reason>NOAUTH Authentication required|WRONGPASS invalid username-password pair)"],
        "Redis refused the connection's credentials: the password Secret is missing or stale.",
        lambda f, c: _pod_check(c),
    ),
    Signature(
        "tls-certificate",
        ["x509", "certif", "pkix", "cert_", "_cert", "leaf_signature"],
        [
            r"x509: (?P<reason>certificate signed by unknown authority|certificate has expired or is not yet valid|certificate is valid for [^,]{1,200}(?:, [^,]{1,200}){0,10}, not [^\s]{1,200}|certificate is not valid for any names[^\r\n]{0,200})",
            r"(?i)certificate verify failed:? ?(?P<reason>[^)\]\r\n]{0,120})",
            r"(?P<reason>PKIX path building failed|unable to find valid certification path to requested target|unable to get local issuer certificate|self[- ]signed certificate(?: in certificate chain)?|CERT_HAS_EXPIRED|UNABLE_TO_VERIFY_LEAF_SIGNATURE|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|ERR_TLS_CERT_ALTNAME_INVALID)",
        ],
        lambda f, c: f"A TLS handshake failed on the certificate ({f.get('reason') or 'verification failed'}): "
        "the peer's certificate expired or does not name the host, or its CA is not in the "
        "container's trust store (a missing CA bundle mount).",
        lambda f, c: _pod_check(c),
    ),
    Signature(
        "dns-resolution",
        ["lookup ", "getaddrinfo", "unknownhost", "nxdomain", "name resolution", "not known", "name does not resolve"],
        [
            r"lookup (?P<host>[\w.-]+)(?: on [^:\s]+(?::\d+)?)?: (?P<reason>no such host|server misbehaving|i/o timeout)",
            r"getaddrinfo (?P<reason>ENOTFOUND|EAI_AGAIN) (?P<host>[\w.-]+)",
            r"UnknownHostException: (?P<host>[\w.-]+)",
            r"(?P<reason>NXDOMAIN)",
            r"(?P<reason>Temporary failure in name resolution|Name or service not known|nodename nor servname provided, or not known|Name does not resolve)",
        ],
        _dns_cause,
        lambda f, c: _service_check(f, c),
    ),
    Signature(
        "node-econnrefused",
        ["econnrefused"],
        [r"ECONNREFUSED\s+" + _HOST + r":(?P<port>\d{1,5})", r"ECONNREFUSED"],
        lambda f, c: f"Node.js could not connect to {_endpoint(f)}: nothing accepts connections "
        "there (no Service of that name, no ready endpoints, wrong port, or the target is still "
        "starting).",
        lambda f, c: _service_check(f, c),
        extract=_with_host_port,
    ),
    Signature(
        "node-eaddrinuse",
        ["eaddrinuse"],
        [r"EADDRINUSE(?::? address already in use)?\s*(?P<address>[\w.:\[\]-]*?:(?P<port>\d{1,5}))?(?!\d)"],
        lambda f, c: f"The process tried to listen on {('port ' + str(f['port'])) if 'port' in f else 'a port'} "
        "that is already taken in the Pod: two containers (or a sidecar) use the same port, or "
        "the app starts its server twice.",
        lambda f, c: _pod_check(c),
        extract=_with_port,
    ),
    Signature(
        "address-in-use",
        ["address already in use"],
        [r"listen tcp (?P<address>[\w.\[\]:-]*?:(?P<port>\d{1,5})): bind: address already in use", r"(?i)address already in use"],
        lambda f, c: f"The process tried to listen on {('port ' + str(f['port'])) if 'port' in f else 'a port'} "
        "that is already taken in the Pod: two containers (or a sidecar) use the same port, or "
        "the app starts its server twice.",
        lambda f, c: _pod_check(c),
        extract=_with_port,
    ),
    Signature(
        "read-only-filesystem",
        ["read-only file system"],
        [r"[Rr]ead-only file system"],
        lambda f, c: f"The process writes to {f.get('path', 'a path')} on a read-only file system: "
        "readOnlyRootFilesystem is on (mount an emptyDir there) or the volume is mounted "
        "read-only.",
        lambda f, c: _pod_check(c),
        extract=_with_path,
    ),
    Signature(
        "permission-denied",
        ["permission denied"],
        [
            r"EACCES: permission denied, \w+ '(?P<path>[^']+)'",
            r"PermissionError: \[Errno 13\] Permission denied: '(?P<path>[^']+)'",
            r"(?P<path>/[\w.@+/-]{1,255}): [Pp]ermission denied",
            r"[Pp]ermission denied[^\r\n/]{0,80}(?P<path>/[\w.@+/-]{1,255})",
            r"[Pp]ermission denied",
        ],
        lambda f, c: f"The process may not access {f.get('path', 'a file')}: the volume is owned "
        "by another user or group (set securityContext.fsGroup or runAsUser), the file mode "
        "forbids it, or the image expects to run as root.",
        lambda f, c: _pod_check(c),
        extract=_with_path,
    ),
    Signature(
        "exec-format-error",
        ["exec format error"],
        [r"(?:exec (?P<path>\S{1,255}): )?exec format error"],
        "The container's entrypoint is built for another CPU architecture than the node's "
        "(for example arm64 on amd64), or a script lacks its #! line.",
        lambda f, c: _pod_check(c),
        extract=_strip_quotes("path"),
    ),
    Signature(
        "command-not-found",
        ["exec", "not found"],
        [
            r"exec: \"(?P<path>[^\"]+)\": (?:executable file not found in \$PATH|stat [^:]+: no such file or directory)",
            r"exec (?P<path>\S{1,255}): no such file or directory",
            r"^(?:/bin/)?(?:ba|da|z)?sh: (?:\d+: |line \d+: )?(?P<path>[^:\s]+): (?:command )?not found",
        ],
        lambda f, c: f"The command {f['path']} does not exist in the image: a wrong command or "
        "args in the Pod spec, a typo, or an image built without it.",
        lambda f, c: _pod_check(c),
        extract=_strip_quotes("path"),
    ),
    Signature(
        "missing-env-var",
        ["env", "keyerror", "not set", "must be set", "is required", "is missing", "is empty"],
        [
            r"(?i)(?:environment variable|env var|env)\s+[`'\"]?(?P<name>[A-Za-z_][A-Za-z0-9_]*)[`'\"]?\s+(?:is\s+)?(?:not set|missing|required|undefined|empty|must be set|not defined)",
            r"(?i)(?:missing|required|undefined)\s+(?:required\s+)?(?:environment variable|env var)s?:?\s+[`'\"]?(?P<name>[A-Za-z_][A-Za-z0-9_]*)",
            r"KeyError: '(?P<name>[A-Z][A-Z0-9_]{2,})'",
            r"\b(?P<name>[A-Z][A-Z0-9]*_[A-Z0-9_]+)\s+(?:is\s+)?(?:not set|must be set|is required|is missing|is empty)\b",
        ],
        lambda f, c: f"The app needs the environment variable {f['name']} and the container does "
        "not define it, or the ConfigMap or Secret key that feeds it is absent.",
        lambda f, c: _pod_check(c),
    ),
    Signature(
        "missing-config-key",
        ["placeholder", "config", "setting", "property"],
        [
            r"Could not resolve placeholder '(?P<name>[^']+)'",
            r"(?i)(?:missing|required|undefined)\s+(?:required\s+)?(?:config(?:uration)?|setting|property)(?:\s+key)?:?\s+[`'\"]?(?P<name>[\w.-]+)",
            r"(?i)(?:config(?:uration)?|setting|property)(?:\s+key)?\s+[`'\"]?(?P<name>[\w.-]+)[`'\"]?\s+(?:is\s+)?(?:not set|missing|required|undefined)",
        ],
        lambda f, c: f"The app's configuration lacks {f['name']}: a key missing from its "
        "ConfigMap or config file, or a renamed setting.",
        lambda f, c: _pod_check(c),
        extract=_strip_quotes("name"),
    ),
    Signature(
        "connection-refused",
        ["connection refused"],
        [r"(?i)connection refused"],
        _refused_cause,
        lambda f, c: _service_check(f, c),
        extract=_with_host_port,
    ),
    Signature(
        "connection-timeout",
        ["timed out", "timeout", "etimedout"],
        [r"(?i)(?:connection timed out|i/o timeout|ETIMEDOUT|connect timed out)"],
        lambda f, c: f"Connections to {_endpoint(f)} time out: a NetworkPolicy drops them, the "
        "target is overloaded, or the address is wrong.",
        lambda f, c: _service_check(f, c),
        extract=_with_host_port,
    ),
    Signature(
        "disk-full",
        ["no space left"],
        [r"(?i)no space left on device"],
        "A volume or the container's writable layer is full: an emptyDir or PVC too small, or "
        "logs and temp files never cleaned.",
        lambda f, c: _pod_check(c),
        extract=_with_path,
    ),
    Signature(
        "segmentation-fault",
        ["segmentation fault", "sigsegv"],
        [r"(?i)segmentation fault|SIGSEGV"],
        "The process crashed on an invalid memory access: a native library bug, or a binary "
        "built for another libc than the image's.",
        lambda f, c: call("fetch_logs", pod=c["pod"], previous=True, lines=200),
    ),
]

# `Traceback (most recent call last):` starts a Python traceback; its last, unindented line says
# what was raised. Handled apart from the catalogue: the evidence is that last line.
_TRACEBACK_START = re.compile(r"^\s*Traceback \(most recent call last\):")
_EXCEPTION_LINE = re.compile(
    r"^(?P<exception>[A-Za-z_][\w.]*)(?::\s?(?P<message>.*))?$"
)


def _substitute(template, fields):
    """`{name}` placeholders of a settings template, from the match's named groups; nothing else is
    interpreted (no attribute access, no format specs)."""
    return re.sub(
        r"\{([A-Za-z_][A-Za-z0-9_]*)\}",
        lambda m: str(fields.get(m.group(1), m.group(0))),
        template,
    )


class ExtraSignature:
    """A signature from the plugin's settings."""

    def __init__(self, id, pattern, cause, next_check):
        self.id = id
        self.pattern = pattern
        self.cause = cause
        self.next_check_template = next_check

    def match(self, line, lower=None):
        m = self.pattern.search(line)
        if not m:
            return None
        return {k: v for k, v in m.groupdict().items() if v is not None}

    def describe(self, fields, ctx):
        context = dict(fields)
        context.setdefault("pod", ctx["pod"])
        return (
            _substitute(self.cause, context),
            _substitute(self.next_check_template, context),
            None,
        )


def parse_extra_signatures(value):
    """Validates `extraSignatures` from the settings; raises ValueError with a message."""
    if not isinstance(value, list):
        raise ValueError("extraSignatures must be a list")
    if len(value) > 100:
        raise ValueError("extraSignatures: at most 100 signatures")
    known = {s.id for s in CATALOGUE} | {"python-traceback"}
    extras = []
    for i, item in enumerate(value):
        where = f"extraSignatures[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where} must be an object with id, pattern, likelyCause, nextCheck")
        unknown = sorted(set(item) - {"id", "pattern", "likelyCause", "nextCheck"})
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}; expected id, pattern, likelyCause, nextCheck")
        for key in ("id", "pattern", "likelyCause", "nextCheck"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise ValueError(f"{where}: {key} (a non-empty string) is required")
        sid = item["id"]
        where = f"{where} ({sid})"
        if not ID_RE.match(sid) or len(sid) > 64:
            raise ValueError(f"{where}: id must be lower-case words joined by '-', like 'my-app-crash'")
        if sid in known:
            raise ValueError(f"{where}: id {sid} is already taken")
        known.add(sid)
        if len(item["pattern"]) > 1000:
            raise ValueError(f"{where}: pattern is longer than 1000 characters")
        try:
            pattern = re.compile(item["pattern"])
        except re.error as e:
            raise ValueError(f"{where}: pattern {item['pattern']!r} is not a valid regular expression: {e}")
        clash = sorted(set(pattern.groupindex) & RESERVED_FIELDS)
        if clash:
            raise ValueError(f"{where}: pattern group name(s) {', '.join(clash)} are reserved; rename them")
        for key in ("likelyCause", "nextCheck"):
            if len(item[key]) > 1000:
                raise ValueError(f"{where}: {key} is longer than 1000 characters")
        extras.append(ExtraSignature(sid, pattern, item["likelyCause"], item["nextCheck"]))
    return extras


# A group that repeats something and is itself repeated: `(a+)+`, `(\w*\s?)*`, `(x|y+){2,}`.
_NESTED_REPEAT = re.compile(r"\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)[+*{]")


def slow_pattern_warnings(extras):
    """Warnings for settings patterns that can backtrack exponentially on a hostile line (a
    heuristic: one level of nesting, the common mistake). They
    are allowed (the host's deadline bounds every call) but worth knowing about."""
    return [
        f"extraSignatures ({e.id}): the pattern {e.pattern.pattern!r} repeats a repeated group and "
        "can take exponential time on some lines; calls that hit it fail at their deadline"
        for e in extras
        if _NESTED_REPEAT.search(e.pattern.pattern)
    ]


def _evidence(line):
    line = line.rstrip("\r\n")
    if len(line) > MAX_EVIDENCE:
        return line[: MAX_EVIDENCE - 1] + "\u2026"
    return line


def match_lines(lines, pod, extras=()):
    """Every signature found in the lines, one entry per signature and distinct fields, newest
    first. Each entry: signature, evidence (the newest line, cut to MAX_EVIDENCE), line (1-based),
    count, the extracted fields, likelyCause, nextCheck and, for built-in signatures, nextTool."""
    ctx = {"pod": pod}
    # Settings' signatures first: a team's own knowledge of its app beats the generic catalogue.
    signatures = list(extras) + CATALOGUE
    found = {}
    claimed = set()
    for number, raw in enumerate(lines, start=1):
        line = raw[:MAX_LINE]
        lower = line.lower()
        for signature in signatures:
            fields = signature.match(line, lower)
            if fields is None:
                continue
            claimed.add(number)
            _record(found, signature, fields, number, line, ctx)
            break
    # Python tracebacks: report the exception unless its line was already explained.
    for number, raw in enumerate(lines, start=1):
        if not _TRACEBACK_START.match(raw[:MAX_LINE]):
            continue
        for after in range(number, min(len(lines), number + 500)):
            candidate = lines[after][:MAX_LINE]
            if not candidate.strip() or candidate[0].isspace():
                continue
            m = _EXCEPTION_LINE.match(candidate.rstrip("\r\n"))
            if m and (after + 1) not in claimed:
                fields = {"exception": m.group("exception")}
                if m.group("message"):
                    fields["message"] = m.group("message")[:200]
                _record(found, _TRACEBACK, fields, after + 1, candidate, ctx)
            break
    matches = sorted(found.values(), key=lambda m: m["line"], reverse=True)
    return matches[:MAX_MATCHES]


class _Traceback:
    id = "python-traceback"

    def describe(self, fields, ctx):
        message = f": {fields['message']}" if "message" in fields else ""
        return (
            f"The Python program died on an uncaught {fields['exception']}{message}. The traceback "
            "lines above it name the file and function.",
            *call("fetch_logs", pod=ctx["pod"], previous=True, lines=200),
        )


_TRACEBACK = _Traceback()


RESERVED_FIELDS = {"signature", "evidence", "likelyCause", "nextCheck", "nextTool", "line", "count"}


def _record(found, signature, fields, number, line, ctx):
    key = (signature.id, tuple(sorted((k, str(v)) for k, v in fields.items())))
    entry = found.get(key)
    if entry is None:
        cause, check, tool = signature.describe(fields, ctx)
        entry = {"signature": signature.id, "evidence": None}
        entry.update(fields)
        entry["likelyCause"] = cause
        entry["nextCheck"] = check
        if tool is not None:
            entry["nextTool"] = tool
        entry["line"] = 0
        entry["count"] = 0
        found[key] = entry
    entry["count"] += 1
    # The newest occurrence is the evidence: in a crash loop the last error is the cause.
    entry["line"] = number
    entry["evidence"] = _evidence(line)
