"""The HTTP edge as an attacker and a closed network meet it: body limits, headers, offline docs.

One service for the module, on the default 1 MB body limit; browsers from the e2e
conftest, with every request to another origin aborted and recorded.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import ConsoleMessage, Page, Request, Route, expect
from prometheus_client import REGISTRY

from tests.brokers import Broker
from tests.e2e.conftest import CHROMIUM
from tests.harness import api, make_token, running_service, sqlite_url, test_settings
from trygg.runtime import Service

pytestmark = [pytest.mark.mqtt, pytest.mark.asyncio(loop_scope="module")]
# As in test_dashboard: off CI a developer without Chromium can still run the rest.
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists() and not os.environ.get("CI"),
                                    reason=f"no Chromium at {CHROMIUM}: apt-get install chromium")

LIMIT = 1_000_000  # the default of Settings.max_request_bytes
HUGE = 300 * 1024 * 1024
CHUNK = b"x" * (64 * 1024)
UI_TIMEOUT_MS = 10_000
# The sources a policy may name: the origin itself, or nothing.
ORIGIN_ONLY = {"'self'", "'none'"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(broker: Broker, tmp_path_factory: pytest.TempPathFactory,
                  ) -> AsyncIterator[Service]:
    settings = test_settings(broker, sqlite_url(tmp_path_factory.mktemp("edge")))
    assert settings.max_request_bytes == LIMIT
    async with running_service(settings) as svc:
        yield svc


@pytest.fixture(scope="module")
def token(service: Service) -> str:
    return make_token(service, "Anna Operatör")


def rss_bytes() -> int:
    """This process's resident memory: the service runs in it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def refused_count() -> float:
    value = REGISTRY.get_sample_value("trygg_http_refused_total", {"reason": "body_too_large"})
    return value or 0.0


class Upload:
    """A JSON document of exactly `size` bytes, sent in 64 KiB chunks as the client asks
    for them and never held whole: `{"pad": "xxx…"}`."""

    HEAD, TAIL = b'{"pad": "', b'"}'

    def __init__(self, size: int) -> None:
        self.size = size
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        self.sent = len(self.HEAD)
        yield self.HEAD
        while (left := self.size - len(self.TAIL) - self.sent) > 0:
            chunk = CHUNK[:left]
            self.sent += len(chunk)
            yield chunk
        self.sent += len(self.TAIL)
        yield self.TAIL


async def post_upload(service: Service, upload: Upload, *, declare: bool) -> httpx.Response:
    """POST the upload to the registry unsigned, its length declared or chunked (unknown).

    The service closes the connection after a 413 while the client may still be sending.
    httpx then reads the answer that came before the close, as browsers and curl do, but
    only with blocking sockets (asyncio drops what was received when a write fails): so
    this client runs in a thread, beside the service in this process's event loop.
    """
    headers = {"Content-Type": "application/json"}
    if declare:
        headers["Content-Length"] = str(upload.size)

    def post() -> httpx.Response:
        with httpx.Client(base_url=service.http_url, timeout=10) as client:
            return client.post("/api/registry", content=upload, headers=headers)

    return await asyncio.to_thread(post)


def csp_directives(policy: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in policy.split(";"))):
        name, *sources = part.split()
        parsed[name] = sources
    return parsed


@pytest.mark.parametrize("declare", [True, False], ids=["content-length", "chunked"])
async def test_an_unauthenticated_300_mb_body_is_refused_early_without_costing_memory(
        service: Service, declare: bool) -> None:
    await post_upload(service, Upload(LIMIT // 2), declare=declare)  # warm the path up
    before, counted = rss_bytes(), refused_count()
    upload = Upload(HUGE)
    response = await post_upload(service, upload, declare=declare)
    grown = rss_bytes() - before

    assert response.status_code == 413
    assert "1000000 bytes" in response.json()["detail"]
    assert refused_count() == counted + 1
    assert upload.sent < HUGE // 4, f"the client sent {upload.sent} bytes before the 413"
    assert grown < 50 * 1024 * 1024, f"the service grew by {grown / 1e6:.0f} MB"


@pytest.mark.parametrize("declare", [True, False], ids=["content-length", "chunked"])
async def test_a_body_of_exactly_the_limit_passes_the_edge_and_one_byte_more_does_not(
        service: Service, declare: bool) -> None:
    at_limit = await post_upload(service, Upload(LIMIT), declare=declare)
    over = await post_upload(service, Upload(LIMIT + 1), declare=declare)

    # Past the edge the registry asks who is calling: no token, so 401.
    assert at_limit.status_code == 401
    assert over.status_code == 413
    assert over.headers["content-type"] == "application/json"


@pytest.mark.parametrize(("path", "signed_in", "status", "no_store"), [
    ("/", False, 200, True),
    ("/static/app.css", False, 200, False),
    ("/static/vendor/swagger-ui/swagger-ui.css", False, 200, False),
    ("/api/alarms", True, 200, True),
    ("/api/alarms", False, 401, True),
    ("/api/no-such-route", False, 404, True),
    ("/no-such-page", False, 404, False),
    ("/docs", False, 200, False),
    ("/openapi.json", False, 200, False),
    ("/healthz", False, 200, False),
])
async def test_every_response_carries_the_security_headers(
        service: Service, token: str, path: str, signed_in: bool, status: int,
        no_store: bool) -> None:
    async with api(service, token if signed_in else None) as client:
        response = await client.get(path)
    policy = csp_directives(response.headers["content-security-policy"])
    sources = {s for name, found in policy.items() for s in found if name != "img-src"}

    assert response.status_code == status
    assert policy["default-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert sources <= ORIGIN_ONLY, policy
    assert set(policy.get("img-src", [])) <= ORIGIN_ONLY | {"data:"}
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cross-origin-opener-policy"] == "same-origin"
    assert "server" not in response.headers  # no product and version to match exploits to
    if no_store:  # the dashboard shell and the API: personal data
        assert response.headers["cache-control"] == "no-store"


async def test_a_refused_body_carries_the_security_headers_too(service: Service) -> None:
    response = await post_upload(service, Upload(LIMIT + 1), declare=True)

    assert response.status_code == 413
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


async def watch(page: Page, service: Service) -> tuple[list[str], list[str]]:
    """Abort and record every request that would leave the origin; record CSP violations
    (from the console and from the page's own securitypolicyviolation events)."""
    left: list[str] = []
    violations: list[str] = []

    async def keep_inside(route: Route) -> None:
        if route.request.url.startswith((service.http_url + "/", "data:")):
            await route.continue_()
        else:
            left.append(route.request.url)
            await route.abort()

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    await page.route("**/*", keep_inside)
    page.on("console", on_console)
    await page.add_init_script("""
        window.__violations = [];
        document.addEventListener("securitypolicyviolation",
            (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`));
    """)
    return left, violations


def is_favicon(request: Request) -> bool:
    """The last thing a page fetches on its own (it was a data: URL the CSP refused)."""
    return request.url.endswith("/static/favicon.svg")


@pytest.mark.browser
@needs_chromium
async def test_docs_render_the_trygg_api_with_nothing_from_outside_and_no_csp_violation(
        page: Page, service: Service) -> None:
    left, violations = await watch(page, service)

    async with page.expect_request_finished(is_favicon, timeout=UI_TIMEOUT_MS):
        await page.goto("/docs")
    operation = page.locator(".opblock-summary-path", has_text="/api/alarms").first
    await expect(operation).to_be_visible(timeout=UI_TIMEOUT_MS)
    await expect(page.locator(".information-container .title")).to_contain_text("Trygg")
    violations += await page.evaluate("window.__violations")

    assert left == []
    assert violations == []


@pytest.mark.browser
@needs_chromium
async def test_the_dashboard_loads_under_the_csp_with_no_violation(
        page: Page, service: Service) -> None:
    left, violations = await watch(page, service)

    async with page.expect_request_finished(is_favicon, timeout=UI_TIMEOUT_MS):
        await page.goto("/")
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible(
        timeout=UI_TIMEOUT_MS)
    violations += await page.evaluate("window.__violations")

    assert left == []
    assert violations == []
