"""docs/img/review_task.png: one task as a reviewer sees it in a real Label Studio.

    LABEL_STUDIO_API_KEY=TOKEN python scripts/review_screenshot.py --url http://127.0.0.1:8080 \
      --email you@example.com --password '...' --tasks tests/fixtures/labelstudio/tasks.json \
      --out docs/img/review_task.png

Needs Debian's chromium, chromium-driver and fonts-noto-cjk, and `pip install selenium` (a docs
tool: not a dependency of mmdetect). Creates a project from the generated labeling config, imports
the first task of --tasks, logs in as a reviewer would and takes the labeling screen.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mmdetect.data.taxonomy import DEFAULT_TAXONOMY
from mmdetect.ops.review import client as ls
from mmdetect.ops.review.labeling import labeling_config


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    for name in ("--url", "--email", "--password"):
        p.add_argument(name, required=True)
    p.add_argument("--tasks", type=Path, required=True)
    p.add_argument("--task", type=int, default=0, help="which task of --tasks")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    conn = ls.client(args.url)
    project = ls.create_project(
        conn, f"screenshot {int(time.time())}", labeling_config(DEFAULT_TAXONOMY)
    )
    ls.push_tasks(conn, project, [json.loads(args.tasks.read_text())[args.task]])
    (task,) = list(conn.tasks.list(project=project))
    opts = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts)
    try:
        driver.get(f"{args.url}/user/login/")
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.find_elements(By.NAME, "email"))
        time.sleep(2)  # the form is live once its scripts ran
        driver.find_element(By.NAME, "email").send_keys(args.email)
        driver.find_element(By.NAME, "password").send_keys(args.password)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
        wait.until(lambda d: "/user/login" not in d.current_url)
        driver.get(f"{args.url}/projects/{project}/data?tab=0&task={task.id}")
        time.sleep(8)  # the labeling interface is a React app that loads after the page
        args.out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out))
    finally:
        driver.quit()
    print(f"{args.out}: project {project}, task {task.id}")


if __name__ == "__main__":
    main()
