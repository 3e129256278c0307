"""The console in a real headless Chromium: the task list updates itself over SSE, a task shows
its timeline, routing neighbours and critique chart, a pending stage is approved from the task
page and the task goes on, and another workspace's key sees none of it.

`UPDATE_SCREENSHOTS=1` refreshes docs/console-*.png (shown in the README)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from raptorflow.stack import LocalStack
from shared.contract.models import SelfCorrectionConfig
from shared.domain.experiments import ExperimentSpec
from shared.stores import experiment_store
from tests.checkpoint_helpers import gate, wait_pending, wait_status
from tests.e2e.console_helpers import GOAL, request_task
from tests.e2e.test_approvals_page import CHROMEDRIVER, CHROMIUM, _browser_missing
from tests.helpers import KEYS, settings_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
DOCS = Path(__file__).resolve().parents[2] / "docs"
DONE = {"completed", "failed"}
OTHER_GOALS = (
    "Draft a launch email newsletter for our analytics product",
    "Research competitor pricing in the CRM market",
    "Plan a product launch campaign for Q3",
)


@contextmanager
def chromium() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1360,1100"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver: Any, check: Callable[[Any], Any], timeout: float = 60) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(check)


def status_of(driver: Any, task_id: str) -> str:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        row = driver.find_element(By.CSS_SELECTOR, f'tr[data-task-id="{task_id}"] .status')
        return str(row.text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def row_text(driver: Any, task_id: str) -> str:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return str(driver.find_element(By.CSS_SELECTOR, f'tr[data-task-id="{task_id}"]').text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def shot(driver: Any, name: str, tmp: Path) -> Path:
    target = DOCS / name if os.environ.get("UPDATE_SCREENSHOTS") else tmp / name
    target.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(target))
    return target


async def test_console_in_chromium(redis_url, redis, workspace, tmp_path):
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)
    from selenium.webdriver.common.by import By

    other = f"{workspace}-other"
    keys = f"k-a={workspace}:alice,k-b={other}"
    settings = settings_for(redis_url, api_keys=keys)
    async with LocalStack(settings, with_gateway=True, start_redis=False) as stack:
        base = stack.gateway_url
        await experiment_store.create(redis, KEYS, workspace, ExperimentSpec(
            name="newsletter", goal_pattern="newsletter", arm_a=["content", "email_writer"],
            arm_b=["email_writer"]))
        seeded = [await request_task(redis, workspace, GOAL)]
        seeded += [await request_task(redis, workspace, g) for g in OTHER_GOALS]
        for task_id in seeded:
            assert await wait_status(redis, workspace, task_id, DONE, timeout=120)
        await request_task(redis, other, "A task of the other workspace")
        with chromium() as driver:
            seen = await asyncio.to_thread(_open_list, driver, base, workspace)
            gated = await request_task(
                redis, workspace, GOAL.replace("healthcare", "hospitals"),
                checkpoints=gate(workspace, "blog_writer"),
                self_correction=SelfCorrectionConfig(min_quality_score=0.95, max_iterations=3),
            )
            await asyncio.to_thread(wait_for, driver, lambda d: status_of(d, gated) == "awaiting_approval")
            # then the row's other cells and the waiting banner, read just after the event
            await asyncio.to_thread(wait_for, driver, lambda d: d.find_elements(By.ID, "waiting"))
            await asyncio.to_thread(wait_for, driver, lambda d: "memory" in row_text(d, gated))
            seen["marker_after"] = driver.execute_script("return window.__marker")
            shot(driver, "console-tasks.png", tmp_path)
            (pending,) = await wait_pending(redis, workspace)
            task_seen = await asyncio.to_thread(_task_page, driver, base, workspace, gated, tmp_path)
            assert await wait_status(redis, workspace, gated, DONE) == "completed"
            stopped = await asyncio.to_thread(_workspace_page, driver, base, workspace, tmp_path)
            (experiment,) = await experiment_store.list_all(redis, KEYS, workspace)
            outsider = await asyncio.to_thread(_outsider, driver, base, workspace, other, gated)
    assert seen["marker"] == seen["marker_after"] == "kept", "the list changed without a reload"
    assert "key=" not in seen["url"]
    for shown in ("TaskRequested", "SequenceChosen", "StageAssigned", "CritiqueDone", "ApprovalNeeded"):
        assert shown in task_seen["timeline"], shown
    assert "similarity" in task_seen["routing"] and "Write a blog post" in task_seen["routing"]
    assert task_seen["charts"] >= 1 and "threshold" in task_seen["chart"]
    assert task_seen["after"] == "completed" and task_seen["marker"] == "kept"
    assert "approved by alice" in task_seen["message"]
    assert pending.approval_id
    assert "stopped" in stopped and experiment.status == "stopped"
    assert outsider["list_status"] == 403 and outsider["task_status"] == 404
    for text in outsider["texts"]:
        assert GOAL not in text and gated not in text and "hospitals" not in text
        assert not any(goal in text for goal in OTHER_GOALS)
    assert f"{workspace}\n" not in outsider["texts"][0] and "other workspace" in outsider["texts"][0]


def _open_list(driver: Any, base: str, workspace: str) -> dict[str, str]:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/ui/tasks?workspace_id={workspace}&key=k-a")
    wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, "#live.on"))
    driver.execute_script("window.__marker = 'kept'")
    return {"url": driver.current_url, "marker": driver.execute_script("return window.__marker")}


def _task_page(driver: Any, base: str, workspace: str, task_id: str, tmp: Path) -> dict[str, Any]:
    """Open the list's link to the task, read it, approve the pending stage, see it go on."""
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/ui/tasks/{task_id}?workspace_id={workspace}")
    card = wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, "section[id^=approval-]"))
    seen: dict[str, Any] = {
        "timeline": driver.find_element(By.ID, "timeline").text,
        "routing": driver.find_element(By.ID, "routing").text,
        "charts": len(driver.find_elements(By.CSS_SELECTOR, "svg.critique")),
        "chart": driver.find_element(By.CSS_SELECTOR, "svg.critique").get_attribute("outerHTML"),
    }
    card.find_element(By.CSS_SELECTOR, "form.decide-approve button").click()
    seen["message"] = wait_for(driver, lambda d: d.find_element(By.ID, "message")).text
    driver.execute_script("window.__marker = 'kept'")
    wait_for(driver, lambda d: d.find_element(By.ID, "task-status").text == "completed")
    wait_for(driver, lambda d: d.find_elements(By.ID, "final-output"))
    seen["after"] = driver.find_element(By.ID, "task-status").text
    seen["marker"] = driver.execute_script("return window.__marker")
    driver.set_window_size(1360, 1700)
    shot(driver, "console-task.png", tmp)
    driver.set_window_size(1360, 1100)
    return seen


def _workspace_page(driver: Any, base: str, workspace: str, tmp: Path) -> str:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/ui/workspace?workspace_id={workspace}")
    wait_for(driver, lambda d: d.find_element(By.ID, "performance"))
    assert driver.find_elements(By.CSS_SELECTOR, "svg.reliability")
    shot(driver, "console-workspace.png", tmp)
    driver.find_element(By.CSS_SELECTOR, "section.experiment form button").click()
    return str(wait_for(driver, lambda d: d.find_element(By.ID, "message")).text)


def _outsider(driver: Any, base: str, workspace: str, other: str, task_id: str) -> dict[str, Any]:
    """A fresh browser session with the other workspace's key."""
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{base}/ui/tasks?workspace_id={other}&key=k-b")
    texts = [driver.find_element(By.TAG_NAME, "body").text]
    driver.get(f"{base}/ui/tasks?workspace_id={workspace}")
    texts.append(driver.find_element(By.TAG_NAME, "body").text)
    list_status = 403 if "does not open" in texts[-1] else 200
    driver.get(f"{base}/ui/tasks/{task_id}?workspace_id={other}")
    texts.append(driver.find_element(By.TAG_NAME, "body").text)
    task_status = 404 if "No such task" in texts[-1] else 200
    return {"texts": texts, "list_status": list_status, "task_status": task_status}
