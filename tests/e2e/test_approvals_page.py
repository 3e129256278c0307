"""The approvals page in a real headless Chromium: see the approval, click Approve, the task
completes. Plus the page's forms and auth over HTTP without a browser."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from raptorflow.stack import LocalStack
from services.gateway.app import create_app
from tests.checkpoint_helpers import events_of, gate, submit, wait_pending, wait_status
from tests.e2e.console_helpers import csrf_of
from tests.helpers import settings_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# `UPDATE_SCREENSHOTS=1 make test` refreshes the screenshot kept in docs/
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "approvals-page.png"
INSTALL_HINT = (
    "needs Debian's chromium and chromium-driver and pip selenium: "
    "`apt-get update && apt-get install -y chromium chromium-driver` and "
    "`.venv/bin/pip install selenium`"
)
DONE = {"completed", "failed"}


def _browser_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return INSTALL_HINT
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        return INSTALL_HINT
    return None


def _approve_in_browser(url: str, approval_id: str, screenshot: Path) -> dict[str, str]:
    """Open the page, check what it shows, save a screenshot, click Approve."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1500",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 20)
        card = wait.until(ec.presence_of_element_located((By.ID, f"approval-{approval_id}")))
        seen = {
            "card": card.text,
            "decider": driver.find_element(By.ID, "decider").text,
            "url": driver.current_url,
        }
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(screenshot))
        card.find_element(By.CSS_SELECTOR, "form.decide-approve button").click()
        seen["message"] = wait.until(ec.presence_of_element_located((By.ID, "message"))).text
        return seen
    finally:
        driver.quit()


async def test_clicking_approve_in_chromium_continues_the_workflow(
    redis_url, redis, workspace, tmp_path
):
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)
    settings = settings_for(redis_url, api_keys=f"k-alice={workspace}:alice")
    async with LocalStack(settings, with_gateway=True, start_redis=False) as stack:
        config = gate(workspace, "research", rules={"quality_above": 0.99})
        task_id = await submit(redis, workspace, checkpoints=config, user="dana")
        (pending,) = await wait_pending(redis, workspace)
        url = f"{stack.gateway_url}/ui/approvals?workspace_id={workspace}&key=k-alice"
        shot = SCREENSHOT if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path / "page.png"
        seen = await asyncio.to_thread(_approve_in_browser, url, pending.approval_id, shot)
        assert await wait_status(redis, workspace, task_id, DONE) == "completed"

    assert "key=" not in seen["url"], "the key moves into a cookie"
    assert seen["decider"] == "alice"
    for shown in (
        "review",
        "quality_above",
        "failed",
        "Deadline",
        "Draft by the research agent",
        "past successes",
        task_id,
    ):
        assert shown in seen["card"], shown
    assert seen["message"].startswith("approved: approval") and "by alice" in seen["message"]
    (resolved,) = await events_of(redis, "ApprovalResolved", task_id)
    assert resolved["payload"]["decided_by"] == "alice"
    assert shot.stat().st_size > 10_000


@pytest.fixture
async def page_client(redis_url, workspace) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_for(redis_url, api_keys=f"k-team={workspace}")
    async with LocalStack(settings, start_redis=False) as stack:
        app = create_app(stack.settings, stack.deps)
        app.state.deps = stack.deps
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw"
        ) as client:
            yield client


async def test_page_forms_reject_with_reason_and_show_409_and_need_a_key(
    page_client, redis, workspace
):
    client = page_client
    task_id = await submit(redis, workspace, checkpoints=gate(workspace, "research"))
    (pending,) = await wait_pending(redis, workspace)

    locked = await client.get("/ui/approvals", params={"workspace_id": workspace})
    assert locked.status_code == 401 and 'name="key"' in locked.text

    wrong = await client.get("/ui/approvals", params={"workspace_id": workspace, "key": "k-no"})
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    opened = await client.get("/ui/approvals", params={"workspace_id": workspace, "key": "k-team"})
    assert opened.status_code == 303 and "raptorflow_key" in opened.headers["set-cookie"]
    client.cookies.set("raptorflow_key", "k-team")
    page = await client.get("/ui/approvals", params={"workspace_id": workspace})
    assert page.status_code == 200 and f"approval-{pending.approval_id}" in page.text

    action = f"/ui/approvals/{pending.approval_id}/decide"
    token = csrf_of(page.text)
    form = {"workspace_id": workspace, "decided_by": "erin", "csrf_token": token}
    cross_site = await client.post(action, data={**form, "action": "approve"})
    assert cross_site.status_code == 403, "a form post without Origin is refused"
    client.headers["Origin"] = "http://gw"
    forged = await client.post(action, data={**form, "action": "approve", "csrf_token": "x"})
    assert forged.status_code == 403 and "token" in forged.text
    no_comments = await client.post(action, data={**form, "action": "changes"})
    assert no_comments.status_code == 422 and "comments are required" in no_comments.text

    rejected = await client.post(action, data={**form, "action": "reject", "reason": "<b>off</b>"})
    assert rejected.status_code == 303
    assert await wait_status(redis, workspace, task_id, DONE) == "failed"
    (resolved,) = await events_of(redis, "ApprovalResolved", task_id)
    assert (
        resolved["payload"]["reason"] == "<b>off</b>"
        and resolved["payload"]["decided_by"] == "erin"
    )

    again = await client.post(action, data={**form, "action": "approve"})
    assert again.status_code == 409 and "already rejected" in again.text
