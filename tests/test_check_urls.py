"""Label values never redirect an HTTP call: URLs of diagnostics and verification against real
local HTTP servers on 127.0.0.1 (one of them "internal", never in the allowlist), the config
loader, and hypothesis properties of the URL builder."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from receiver.config import parse_config
from receiver.diagnostics import list_evidence, run_due
from receiver.errors import ConfigError, TargetNotAllowed
from receiver.remediation.rules import HttpCheck
from receiver.remediation.targets import HttpTargets
from receiver.remediation.urls import build_url
from receiver.remediation.verification import http_check
from receiver.store import Store
from tests.conftest import Clock
from tests.engine_kit import Kit, rule
from tests.factories import make_alert, make_notification

NO_SLEEP = lambda _s: None  # noqa: E731 - a test clock that does not wait
INTERNAL_BODY = "internal-admin-secret-0123"


class Recorder:
    """A real HTTP server on 127.0.0.1 that records the exact request path of every request.

    /health 200, /fails 503, /internal 200 with :data:`INTERNAL_BODY`, /echo/... 200,
    /redirect?to=URL 302 to URL, /loop 302 to itself; anything else 404."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                with outer.lock:
                    outer.paths.append(self.path)
                path, _, query = self.path.partition("?")
                status, body, headers = 404, "no such page", {}
                if path == "/health":
                    status, body = 200, "ok"
                elif path == "/fails":
                    status, body = 503, "still broken"
                elif path == "/internal":
                    status, body = 200, INTERNAL_BODY
                elif path.startswith("/echo/"):
                    status, body = 200, "echo"
                elif path == "/redirect":
                    status, body = 302, ""
                    headers["Location"] = parse_qs(query)["to"][0]
                elif path == "/loop":
                    status, body = 302, ""
                    headers["Location"] = "/loop"
                data = body.encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.hostport = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.hostport}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def seen(self) -> list[str]:
        with self.lock:
            return list(self.paths)

    def reset(self) -> None:
        with self.lock:
            self.paths.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def public() -> Iterator[Recorder]:
    """The service that checks may call (its host:port is the allowlist)."""
    server = Recorder()
    yield server
    server.close()


@pytest.fixture(scope="module")
def internal() -> Iterator[Recorder]:
    """An internal service on the same machine that no check may reach."""
    server = Recorder()
    yield server
    server.close()


@pytest.fixture
def servers(public: Recorder, internal: Recorder) -> tuple[Recorder, Recorder]:
    public.reset()
    internal.reset()
    return public, internal


def allow(*hostports: str) -> HttpTargets:
    return HttpTargets(hosts=list(hostports))


def hostile_instances(public: Recorder, internal: Recorder) -> list[str]:
    """Instance labels that try to point a check at another URL, host or port."""
    p, i = public.port, internal.port
    return [
        f"127.0.0.1:{p}/internal?",           # path and query smuggled into the host
        f"127.0.0.1:{p}/internal#",
        f"127.0.0.1:{p}#",                     # h:1# cuts the template's path
        f"127.0.0.1:{p}?",
        f"evil@127.0.0.1:{i}",                 # userinfo: a@b
        f"127.0.0.1:{p}@127.0.0.1:{i}",
        f"127.0.0.1:{p}%2finternal",           # percent-encoding
        f"127.0.0.1%3a{i}",
        f"127.0.0.1:{p}\\internal",            # backslash (a slash to WHATWG parsers)
        f"127.0.0.1:{p} ",                     # whitespace
        f" 127.0.0.1:{p}",
        f"127.0.0.1:{p}\t",
        f"127.0.0.1:{p}\n/internal",
        f"127.0.0.1:{i}",                      # a plain host:port that is not allowed
        f"localhost:{p}",
        f"127.1:{p}",                          # other spellings of 127.0.0.1
        f"2130706433:{p}",
        f"0x7f000001:{p}",
        f"0177.0.0.1:{p}",
        f"１２７.0.0.1:{p}",                  # unicode: fullwidth digits
        f"127.0.0.1:{p}\u2044internal",        # unicode: fraction slash
        f"ℊ.example:{p}",
        f"[::1]:{p}",                          # IPv6 forms
        f"[::ffff:127.0.0.1]:{p}",
        f"[::ffff:7f00:1]:{p}",
        f"[fe80::1%25lo]:{p}",
        f"::1:{p}",
        f"[::1]:{p}]",
        f"127.0.0.1:{p}:{i}",
        f"127.0.0.1:0{i}",
        f"127.0.0.1:{p}{'0' * 5000}",           # very long
        "a" * 300 + f":{p}",
        "",
    ]


# -- hostile host:port labels are refused and nothing is fetched --------------------------


def test_hostile_instance_labels_are_refused_by_verification_and_nothing_is_fetched(
    servers: tuple[Recorder, Recorder],
) -> None:
    """Every hostile instance label makes the HTTP verification a refused, failed check, and
    neither the allowed nor the internal server sees any request."""
    public, internal = servers
    hosts = allow(public.hostport)
    spec = HttpCheck(url="http://{{ labels.instance }}/health", within="0s")
    for value in hostile_instances(public, internal):
        result = http_check(spec, {"instance": value}, NO_SLEEP, hosts=hosts)
        assert not result.ok, value
        assert result.summary.startswith("refused: "), (value, result.summary)
        assert result.detail["refused"], value
    assert public.seen() == [] and internal.seen() == []

    ok = http_check(spec, {"instance": public.hostport}, NO_SLEEP, hosts=hosts)
    assert ok.ok and public.seen() == ["/health"]


def test_ssrf_label_cannot_read_an_internal_url_back_as_evidence(
    store: Store, clock: Clock, servers: tuple[Recorder, Recorder]
) -> None:
    """instance="127.0.0.1:PORT/internal?" makes the diagnostic refused (evidence and the
    timeline say so, with the reason); the internal page is never fetched nor stored."""
    public, internal = servers
    kit = Kit(store, clock, [], targets={"http": {"hosts": [public.hostport]}},
              diagnostics={"checks": [
                  {"name": "api", "http": {"url": "http://{{ labels.instance }}/api/v1/health"}}
              ]})
    labels = {"instance": f"{public.hostport}/internal?"}
    result = kit.fire(make_notification([make_alert(labels=labels)],
                                        group_key=f"{{}}:{{g={uuid.uuid4().hex}}}"))
    incident = int(result.incident_id)

    assert run_due(store, kit.config, clock=clock, worker_id="w1") == 1

    [evidence] = list_evidence(store, incident)
    assert evidence.outcome == "refused" and not evidence.ok
    assert "not allowed" in evidence.summary and "plain host:port" in evidence.summary
    timeline = store.get_incident(incident)["timeline"]
    [event] = [e for e in timeline if e["kind"] == "diagnostics"]
    assert "refused: not allowed" in event["message"] and "plain host:port" in event["message"]
    assert event["detail"]["counts"] == {"refused": 1}
    assert public.seen() == [] and internal.seen() == []
    assert INTERNAL_BODY not in str(evidence) + str(timeline)


def test_hostile_instance_labels_are_refused_by_diagnostics_and_nothing_is_fetched(
    store: Store, clock: Clock, servers: tuple[Recorder, Recorder]
) -> None:
    """An incident whose alerts carry every hostile instance label gets one refused
    diagnostic naming the reasons, and neither server sees a request."""
    public, internal = servers
    kit = Kit(store, clock, [], targets={"http": {"hosts": [public.hostport]}},
              diagnostics={"checks": [
                  {"name": "api", "http": {"url": "http://{{ labels.instance }}/health"}}
              ]})
    alerts = [make_alert(labels={"instance": value})
              for value in hostile_instances(public, internal)]
    result = kit.fire(make_notification(alerts, group_key=f"{{}}:{{g={uuid.uuid4().hex}}}"))
    assert run_due(store, kit.config, clock=clock, worker_id="w1") == 1

    [evidence] = list_evidence(store, int(result.incident_id))
    assert evidence.outcome == "refused"
    assert all(e.startswith("not allowed: ") for e in evidence.detail["errors"])
    assert public.seen() == [] and internal.seen() == []


def test_a_fragment_in_a_label_cannot_mark_a_failed_fix_mitigated(
    store: Store, clock: Clock, servers: tuple[Recorder, Recorder]
) -> None:
    """instance="127.0.0.1:PORT/health#" would have turned GET /fails (503) into GET /health
    (200); now the verification is refused, the job fails and the timeline says why."""
    public, _ = servers
    check = {"http": {"url": "http://{{ labels.instance }}/fails", "within": "0s"}}
    kit = Kit(store, clock, [rule(verify=check)],
              targets={"http": {"hosts": [public.hostport]}})
    alert = make_alert(labels={"container": "web1", "instance": f"{public.hostport}/health#"})
    incident = kit.fire(make_notification([alert])).incident_id
    kit.drain()

    [job] = kit.jobs()
    assert job["state"] == "failed" and "refused" in job["reason"]
    assert "verification_passed" not in kit.kinds(incident)
    [failed] = [e for e in store.get_incident(incident)["timeline"]
                if e["kind"] == "verification_failed"]
    assert "refused" in failed["message"] and "plain host:port" in failed["message"]
    assert public.seen() == []


def test_a_plain_allowed_host_port_label_is_called(
    servers: tuple[Recorder, Recorder],
) -> None:
    """A plain host:port in the allowlist fills the host, and a host-only label takes the
    template's literal port."""
    public, _ = servers
    hosts = allow("127.0.0.1:*")
    by_hostport = HttpCheck(url="http://{{ labels.instance }}/health", within="0s")
    by_host = HttpCheck(url=f"http://{{{{ labels.host }}}}:{public.port}/health", within="0s")
    assert http_check(by_hostport, {"instance": public.hostport}, NO_SLEEP, hosts=hosts).ok
    assert http_check(by_host, {"host": "127.0.0.1"}, NO_SLEEP, hosts=hosts).ok
    refused = http_check(by_host, {"host": public.hostport}, NO_SLEEP, hosts=hosts)
    assert not refused.ok and "refused" in refused.summary
    assert public.seen() == ["/health", "/health"]


# -- path and query values are percent-encoded -----------------------------------------------


def test_a_label_in_the_path_and_query_is_percent_encoded(
    servers: tuple[Recorder, Recorder],
) -> None:
    """The server receives the value percent-encoded whole: it adds no path segment, query
    parameter or fragment."""
    public, _ = servers
    spec = HttpCheck(url=f"{public.url}/echo/{{{{ labels.job }}}}?job={{{{ labels.job }}}}&x=1",
                     within="0s")
    value = "a/../../internal?x=1&y=2#frag %zz é"
    result = http_check(spec, {"job": value}, NO_SLEEP, hosts=allow(public.hostport))
    encoded = "a%2F..%2F..%2Finternal%3Fx%3D1%26y%3D2%23frag%20%25zz%20%C3%A9"
    assert result.ok, result.summary
    assert public.seen() == [f"/echo/{encoded}?job={encoded}&x=1"]


def test_a_dot_segment_label_in_the_path_is_refused(servers: tuple[Recorder, Recorder]) -> None:
    """A value of only dots would climb the path (/echo/../internal); it is refused."""
    public, _ = servers
    spec = HttpCheck(url=f"{public.url}/echo/{{{{ labels.job }}}}/x", within="0s")
    for value in ("..", ".", "..."):
        result = http_check(spec, {"job": value}, NO_SLEEP, hosts=allow(public.hostport))
        assert not result.ok and "dot segment" in result.summary
    assert public.seen() == []


# -- redirects ---------------------------------------------------------------------------------


def test_a_redirect_to_a_host_outside_the_allowlist_is_not_followed(
    servers: tuple[Recorder, Recorder],
) -> None:
    """/redirect to the internal server is refused at that hop: the internal server sees no
    request, and the check records the refused redirect."""
    public, internal = servers
    hosts = allow(public.hostport)
    for target in (f"{internal.url}/internal", f"http://localhost:{public.port}/health",
                   f"http://user:pw@{public.hostport}/health", "ftp://127.0.0.1/x",
                   f"//127.0.0.1:{internal.port}/internal"):
        spec = HttpCheck(url=f"{public.url}/redirect?to={target}", within="0s")
        result = http_check(spec, {}, NO_SLEEP, hosts=hosts)
        assert not result.ok and "refused" in result.summary, target
        assert "not followed" in result.detail["refused"] and result.detail["status"] == 302
    assert internal.seen() == []
    assert all(p.startswith("/redirect?") for p in public.seen())


def test_redirects_within_the_allowlist_are_followed_and_capped(
    servers: tuple[Recorder, Recorder],
) -> None:
    """A redirect to an allowed host is followed (the hops are recorded); a loop stops after
    five redirects."""
    public, _ = servers
    hosts = allow(public.hostport)
    spec = HttpCheck(url=f"{public.url}/redirect?to=/health", within="0s")
    followed = http_check(spec, {}, NO_SLEEP, hosts=hosts)
    assert followed.ok and followed.detail["redirects"] == [f"{public.url}/health"]

    public.reset()
    looping = http_check(HttpCheck(url=f"{public.url}/loop", within="0s"), {}, NO_SLEEP,
                         hosts=hosts)
    assert not looping.ok and "more than 5 redirects" in looping.summary
    assert public.seen() == ["/loop"] * 6


def test_a_diagnostic_redirect_outside_the_allowlist_is_refused_evidence(
    store: Store, clock: Clock, servers: tuple[Recorder, Recorder]
) -> None:
    """Through the worker, a diagnostic whose endpoint redirects to the internal server is
    stored as refused, without the internal page."""
    public, internal = servers
    url = f"{public.url}/redirect?to={internal.url}/internal"
    kit = Kit(store, clock, [], targets={"http": {"hosts": [public.hostport]}},
              diagnostics={"checks": [{"name": "hop", "http": {"url": url}}]})
    result = kit.fire(make_notification([make_alert()], group_key=f"{{}}:{{g={uuid.uuid4()}}}"))
    assert run_due(store, kit.config, clock=clock, worker_id="w1") == 1

    [evidence] = list_evidence(store, int(result.incident_id))
    assert evidence.outcome == "refused" and "not followed" in evidence.summary
    assert internal.seen() == [] and INTERNAL_BODY not in str(evidence)


# -- the config loader --------------------------------------------------------------------------


def test_a_literal_check_url_outside_the_allowlist_is_refused_at_load() -> None:
    """With targets.http.hosts empty (the default) nothing may be called: each literal check
    URL is refused with its field path; listing the host lets the same config load."""
    checks = [{"name": "api", "http": {"url": "http://10.0.0.5:8080/health"}},
              {"name": "prom", "prometheus": {"url": "http://prom:9090",
                                              "queries": {"up": "up"}}}]
    rules = [rule(verify={"http": {"url": "http://10.0.0.5:8080/ready"},
                          "promql": {"url": "https://prom", "query": "up"}})]
    with pytest.raises(ConfigError) as caught:
        parse_config({"diagnostics": {"checks": checks}, "rules": rules})
    paths = dict(caught.value.problems)
    assert set(paths) == {"diagnostics.checks[0].http.url", "diagnostics.checks[1].prometheus.url",
                          "rules[0].verify.http.url", "rules[0].verify.promql.url"}
    assert "10.0.0.5:8080 is not in targets.http.hosts" in paths["rules[0].verify.http.url"]
    assert "prom:443" in paths["rules[0].verify.promql.url"]

    config = parse_config({"diagnostics": {"checks": checks}, "rules": rules,
                           "targets": {"http": {"hosts": ["10.0.0.5:8080", "prom:*"]}}})
    assert config.targets.http.allows("10.0.0.5", 8080)


@pytest.mark.parametrize(("url", "why"), [
    ("http://{{ labels.user }}@127.0.0.1/", "userinfo"),
    ("http://u:{{ labels.password }}@127.0.0.1/", "userinfo"),
    ("http://127.0.0.1:{{ labels.port }}x/", "plain host:port"),
    ("http://{{ labels.a }}/{{ labels.b }}@x/", None),
    ("http://127.0.0.1\\@evil/", "backslash"),
])
def test_a_url_template_whose_authority_a_label_could_bend_is_refused_at_load(
    url: str, why: str | None
) -> None:
    """A label may fill the host or host:port only; in the userinfo, or beside other text in
    the port, the template is refused with the field path."""
    data = {"targets": {"http": {"hosts": ["127.0.0.1:*"]}},
            "diagnostics": {"checks": [{"name": "x", "http": {"url": url}}]}}
    if why is None:  # '@' after the first '/' is in the path: allowed
        parse_config(data)
        return
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    [(path, message)] = caught.value.problems
    assert path == "diagnostics.checks[0].http.url" and why in message


def test_host_globs_match_within_one_dns_label() -> None:
    """'*' never crosses a dot (web-*.svc does not match web-1.evil.svc); ':*' is any port;
    IPv6 globs compare compressed."""
    hosts = allow("web-*.svc:8080", "127.0.0.1:*", "[0::1]:80")
    assert hosts.allows("web-1.svc", 8080) and hosts.allows("WEB-2.SVC", 8080)
    assert not hosts.allows("web-1.evil.svc", 8080) and not hosts.allows("web-1.svc", 8081)
    assert hosts.allows("127.0.0.1", 1) and not hosts.allows("127.0.0.10", 1)
    assert hosts.allows("[::1]", 80) and hosts.allows("[0:0::1]", 80)
    assert not allow().allows("127.0.0.1", 80)
    with pytest.raises(ValueError, match="IPv6"):
        allow("[1::2::3]:80")


# -- properties ---------------------------------------------------------------------------------

PORT = 8080
HOSTS = allow("127.0.0.1:*", "web-*.svc:8080", "[::1]:*")
TEMPLATES = [
    "http://{{ labels.v }}/health",
    "https://{{ labels.v }}:8443/health",
    "http://{{ labels.v }}.svc:8080/x",
    "http://127.0.0.1:8080/p/{{ labels.v }}/q",
    "http://127.0.0.1:8080/search?q={{ labels.v }}&x=1",
    "http://probe:pw@127.0.0.1:8080/{{ labels.v }}#{{ labels.v }}",
]
values = st.one_of(
    st.text(max_size=80),
    st.text(alphabet="/?#@\\:%[]. \t\n", max_size=20),
    st.builds(lambda a, b: f"{a}{b}", st.sampled_from(
        ["127.0.0.1", "127.0.0.1:1", "web-1", "[::1]", "localhost:80", "web-1.evil"]),
        st.text(alphabet="/?#@\\:%[]. x0é", max_size=8)),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=200, max_size=400),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(template=st.sampled_from(TEMPLATES), value=values)
@example(template=TEMPLATES[0], value="127.0.0.1:1/x?")
@example(template=TEMPLATES[0], value="a@127.0.0.1")
@example(template=TEMPLATES[0], value="127.0.0.1:1#")
@example(template=TEMPLATES[0], value="%2f")
@example(template=TEMPLATES[0], value="[::ffff:127.0.0.1]:80")
@example(template=TEMPLATES[2], value="web-1.evil")
@example(template=TEMPLATES[3], value="..")
def test_built_urls_keep_the_templates_scheme_userinfo_and_an_allowed_host(
    template: str, value: str
) -> None:
    """For any value, the URL is refused, or its scheme and userinfo are the template's, its
    host:port is the template's literal or a plain allowed host:port, and a value in the path,
    query or fragment comes back whole when decoded."""
    labels = {"v": value}
    try:
        url = build_url(template, labels, {}, HOSTS)
    except TargetNotAllowed:
        return
    got, want = urlsplit(url), urlsplit(template.replace("{{ labels.v }}", "V"))
    assert got.scheme == want.scheme
    assert (got.username, got.password) == (want.username, want.password)
    netloc = got.netloc.rpartition("@")[2]
    if "V" in want.netloc:
        assert want.netloc.replace("V", value) == got.netloc
        assert all(c not in value for c in "/?#@\\% \t\n")
        assert HOSTS.allows(f"[{got.hostname}]" if ":" in (got.hostname or "") else
                            got.hostname or "", got.port or {"http": 80, "https": 443}[got.scheme])
    else:
        assert netloc == want.netloc.rpartition("@")[2]
        for part, tpl in ((got.path, want.path), (got.query, want.query),
                          (got.fragment, want.fragment)):
            pieces = tpl.split("V")
            if len(pieces) == 2:
                assert part.startswith(pieces[0]) and part.endswith(pieces[1])
                inner = part[len(pieces[0]): len(part) - len(pieces[1])]
                assert all(c not in inner for c in "/?#&= ") and unquote(inner) == value
