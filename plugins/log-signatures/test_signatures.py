"""The catalogue on real-looking log lines, under a plain CPython: `python3 -m unittest` in this
folder (build-polyglot.sh runs it before building the component)."""

import time
import unittest

import signatures
from signatures import match_lines, parse_extra_signatures

# (log line, signature, fields that must be extracted)
SAMPLES = [
    ("Exception in thread \"main\" java.lang.OutOfMemoryError: Java heap space",
     "jvm-out-of-memory", {"kind": "Java heap space"}),
    ("Picked up JAVA_TOOL_OPTIONS: -Xms256m -Xmx768m",
     "jvm-heap-settings", {"heap": "768m", "heapBytes": 768 << 20, "initialHeap": "256m"}),
    ("panic: runtime error: invalid memory address or nil pointer dereference",
     "go-nil-pointer", {}),
    ("panic: assignment to entry in nil map", "go-panic", {"message": "assignment to entry in nil map"}),
    ("fatal error: concurrent map writes", "go-panic", {"message": "concurrent map writes"}),
    ("Error: connect ECONNREFUSED 10.96.14.2:5432", "node-econnrefused", {"host": "10.96.14.2", "port": 5432}),
    ("Error: listen EADDRINUSE: address already in use :::3000", "node-eaddrinuse", {"port": 3000}),
    ("listen tcp :8080: bind: address already in use", "address-in-use", {"port": 8080}),
    ("ModuleNotFoundError: No module named 'psycopg2'", "python-module-not-found", {"module": "psycopg2"}),
    ('psql: error: connection to server at "db" (10.0.0.5), port 5432 failed: FATAL:  password authentication failed for user "app"',
     "postgres-auth-failed", {"user": "app"}),
    ('FATAL:  no pg_hba.conf entry for host "10.244.1.7", user "app", database "orders", no encryption',
     "postgres-auth-failed", {"user": "app", "client": "10.244.1.7", "database": "orders"}),
    ('connection to server at "postgres" (10.96.3.4), port 5432 failed: Connection refused',
     "postgres-connection-failed", {"host": "postgres", "port": 5432, "reason": "Connection refused"}),
    ('FATAL:  database "orders" does not exist', "postgres-connection-failed", {"database": "orders"}),
    ("ERROR 1045 (28000): Access denied for user 'shop'@'10.244.2.9' (using password: YES)",
     "mysql-access-denied", {"user": "shop", "client": "10.244.2.9", "usingPassword": "YES"}),
    ("ERROR 2003 (HY000): Can't connect to MySQL server on 'mysql:3306' (111)",
     "mysql-connection-failed", {"host": "mysql", "port": 3306}),
    ("ReplyError: NOAUTH Authentication required.", "redis-auth-failed", {}),
    ('Get "https://api.internal:8443/v1": x509: certificate signed by unknown authority',
     "tls-certificate", {"reason": "certificate signed by unknown authority"}),
    ("ssl.SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate has expired (_ssl.c:1006)",
     "tls-certificate", {"reason": "certificate has expired (_ssl.c:1006"}),
    ("javax.net.ssl.SSLHandshakeException: PKIX path building failed: sun.security.provider.certpath.SunCertPathBuilderException",
     "tls-certificate", {"reason": "PKIX path building failed"}),
    ('dial tcp: lookup payments-db on 10.96.0.10:53: no such host',
     "dns-resolution", {"host": "payments-db", "reason": "no such host"}),
    ("Error: getaddrinfo ENOTFOUND kafka-broker", "dns-resolution", {"host": "kafka-broker", "reason": "ENOTFOUND"}),
    ("socket.gaierror: [Errno -3] Temporary failure in name resolution",
     "dns-resolution", {"reason": "Temporary failure in name resolution"}),
    ("java.net.UnknownHostException: rabbitmq.messaging.svc", "dns-resolution", {"host": "rabbitmq.messaging.svc"}),
    ("open /data/db/WiredTiger.lock: permission denied", "permission-denied", {"path": "/data/db/WiredTiger.lock"}),
    ("Error: EACCES: permission denied, mkdir '/var/lib/app/cache'", "permission-denied", {"path": "/var/lib/app/cache"}),
    ("PermissionError: [Errno 13] Permission denied: '/srv/uploads/tmp'", "permission-denied", {"path": "/srv/uploads/tmp"}),
    ("mkdir /tmp/nginx: read-only file system", "read-only-filesystem", {"path": "/tmp/nginx"}),
    ("exec /usr/local/bin/server: exec format error", "exec-format-error", {"path": "/usr/local/bin/server"}),
    ('exec: "gunicorn": executable file not found in $PATH', "command-not-found", {"path": "gunicorn"}),
    ("/bin/sh: 1: start.sh: not found", "command-not-found", {"path": "start.sh"}),
    ("FATAL: environment variable DATABASE_URL is not set", "missing-env-var", {"name": "DATABASE_URL"}),
    ("Error: Missing required environment variable: STRIPE_API_KEY", "missing-env-var", {"name": "STRIPE_API_KEY"}),
    ("KeyError: 'REDIS_PASSWORD'", "missing-env-var", {"name": "REDIS_PASSWORD"}),
    ("java.lang.IllegalArgumentException: Could not resolve placeholder 'payment.gateway.url' in value \"${payment.gateway.url}\"",
     "missing-config-key", {"name": "payment.gateway.url"}),
    ("2026-11-25T09:41:07.512Z ERROR cache: dial tcp: connect to redis:6379 failed: Connection refused",
     "connection-refused", {"host": "redis", "port": 6379}),
    ("Error: Connection refused to redis:6379", "connection-refused", {"host": "redis", "port": 6379}),
    ('Get "http://localhost:9000/ready": dial tcp [::1]:9000: connect: connection refused',
     "connection-refused", {"host": "localhost", "port": 9000}),
    ("dial tcp 10.96.7.7:9092: i/o timeout", "connection-timeout", {"host": "10.96.7.7", "port": 9092}),
    ("write /var/log/app.log: no space left on device", "disk-full", {"path": "/var/log/app.log"}),
    ("Segmentation fault (core dumped)", "segmentation-fault", {}),
]


class CatalogueTest(unittest.TestCase):
    def test_every_sample_matches_its_signature_with_its_fields(self):
        for line, signature, fields in SAMPLES:
            with self.subTest(line=line):
                matches = match_lines([line], "web-0")
                self.assertEqual(len(matches), 1, matches)
                m = matches[0]
                self.assertEqual(m["signature"], signature)
                self.assertEqual(m["evidence"], line)
                for key, value in fields.items():
                    self.assertEqual(m.get(key), value, (key, m))
                self.assertTrue(m["likelyCause"].endswith("."), m["likelyCause"])
                self.assertRegex(m["nextCheck"], r"^[a-z_]+\(.*\)$")

    def test_every_catalogue_signature_has_a_sample(self):
        sampled = {s for _, s, _ in SAMPLES}
        self.assertEqual(sampled, {s.id for s in signatures.CATALOGUE})

    def test_ordinary_lines_match_nothing(self):
        quiet = [
            "2026-11-25T09:41:06.118Z  INFO critical_app: starting critical-app version=1.8.2",
            "2026-11-25T09:41:06.119Z  INFO config loaded listen_addr=0.0.0.0:8080",
            "GET /healthz 200 0.4ms",
            "Started ReportWorkerApplication in 5.213 seconds (process running for 5.871)",
            "INFO: connection pool ready (8 connections to redis:6379)",
        ]
        self.assertEqual(match_lines(quiet, "p"), [])

    def test_repeats_are_counted_and_the_newest_line_is_the_evidence(self):
        lines = [
            "12:00:01 WARN connect to redis:6379 failed: Connection refused, retrying attempt=1",
            "12:00:02 WARN connect to redis:6379 failed: Connection refused, retrying attempt=2",
            "Error: Connection refused to redis:6379",
            "Error: Connection refused to postgres:5432",
        ]
        matches = match_lines(lines, "p")
        self.assertEqual([(m["host"], m["count"], m["line"]) for m in matches],
                         [("postgres", 1, 4), ("redis", 3, 3)])
        self.assertEqual(matches[1]["evidence"], "Error: Connection refused to redis:6379")
        self.assertEqual(matches[1]["nextTool"], {"name": "check_service", "arguments": {"name": "redis"}})

    def test_a_python_traceback_reports_its_exception(self):
        lines = [
            "Traceback (most recent call last):",
            '  File "/app/main.py", line 3, in <module>',
            "    settings.load()",
            "ValueError: invalid literal for int() with base 10: 'eight'",
        ]
        [m] = match_lines(lines, "p")
        self.assertEqual(m["signature"], "python-traceback")
        self.assertEqual(m["exception"], "ValueError")
        self.assertEqual(m["line"], 4)
        # A traceback whose exception a specific signature explains is reported once, as that.
        lines[-1] = "ModuleNotFoundError: No module named 'yaml'"
        self.assertEqual([m["signature"] for m in match_lines(lines, "p")], ["python-module-not-found"])

    def test_evidence_is_cut_and_hostile_lines_stay_fast(self):
        long_line = "Connection refused " + "x" * 5000
        [m] = match_lines([long_line], "p")
        self.assertEqual(len(m["evidence"]), signatures.MAX_EVIDENCE)
        self.assertTrue(m["evidence"].endswith("\u2026"))
        started = time.monotonic()
        hostile = [
            "/" * 200_000,
            "a:" * 100_000,
            "{pod}{0.__class__}" * 1000,
            "permission denied " + "/" * 5000 + " permission denied",
            "exec " * 1000 + "exec format error",
            "env " * 1000 + "A_" * 1000,
            "Connection refused " + "a." * 3000 + ":1",
            "Traceback (most recent call last):",
        ]
        match_lines(hostile * 5, "p")
        self.assertLess(time.monotonic() - started, 2)

    def test_extra_signatures_are_validated_and_come_first(self):
        extras = parse_extra_signatures([{
            "id": "ledger-lock",
            "pattern": r"could not obtain lock on (?P<table>\w+)",
            "likelyCause": "Another job holds {table}; {missing} stays as written.",
            "nextCheck": "list_events(kind=\"Pod\", name=\"{pod}\")",
        }])
        [m] = match_lines(["ERROR could not obtain lock on ledger: Connection refused"], "job-1", extras)
        self.assertEqual(m["signature"], "ledger-lock")
        self.assertEqual(m["table"], "ledger")
        self.assertEqual(m["likelyCause"], "Another job holds ledger; {missing} stays as written.")
        self.assertEqual(m["nextCheck"], 'list_events(kind="Pod", name="job-1")')
        self.assertNotIn("nextTool", m)
        bad = [
            ({"id": "x", "pattern": "(unclosed", "likelyCause": "c", "nextCheck": "n"}, "not a valid regular expression"),
            ({"id": "Bad Id", "pattern": "a", "likelyCause": "c", "nextCheck": "n"}, "id must be"),
            ({"id": "connection-refused", "pattern": "a", "likelyCause": "c", "nextCheck": "n"}, "already taken"),
            ({"id": "x", "pattern": "a"}, "likelyCause (a non-empty string) is required"),
            ({"id": "x", "pattern": "(?P<line>a)", "likelyCause": "c", "nextCheck": "n"}, "reserved"),
            ({"id": "x", "pattern": "a", "likelyCause": "c", "nextCheck": "n", "colour": 1}, "unknown field"),
        ]
        for item, message in bad:
            with self.subTest(item=item):
                with self.assertRaises(ValueError) as e:
                    parse_extra_signatures([item])
                self.assertIn(message, str(e.exception))

    def test_patterns_that_can_backtrack_exponentially_are_flagged(self):
        def flagged(pattern):
            extras = parse_extra_signatures([{"id": "x", "pattern": pattern, "likelyCause": "c", "nextCheck": "n"}])
            return bool(signatures.slow_pattern_warnings(extras))

        for slow in [r"^(a+)+$", r"(\w*\s?)*end", r"(x|y+){2,}", r"(\d+\.?)+"]:
            self.assertTrue(flagged(slow), slow)
        for fine in [r"could not obtain lock on (?P<table>\w+)", r"(a|b)+", r"\(a+\)+", r"x{2,3}(y)"]:
            self.assertFalse(flagged(fine), fine)


if __name__ == "__main__":
    unittest.main()
