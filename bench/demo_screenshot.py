"""A screenshot of a running demo store (docs/demo.png), taken in headless Debian chromium the same
way tests/test_demo.py drives the page: type the query, wait for both columns, open the dropped items.

    lref demo --opensearch-port 9260 --transport-port 9360 --reranker-port 8060 --port 8070 &
    python bench/demo_screenshot.py --url http://127.0.0.1:8070/ --query "cordless drill" --out docs/demo.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from browser import By, chromium, expand_dropped, full_page_screenshot, search  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080/")
    parser.add_argument("--query", default="cordless drill")
    parser.add_argument("--out", type=Path, default=Path("docs/demo.png"))
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the search")
    args = parser.parse_args()
    driver = chromium()
    try:
        search(driver, args.url, args.query, timeout=args.timeout)
        if driver.find_element(By.TAG_NAME, "body").get_attribute("data-state") != "done":
            sys.exit(f"the search failed: {driver.find_element(By.CSS_SELECTOR, '[data-testid=error]').text}")
        if driver.find_element(By.CSS_SELECTOR, "[data-testid=dropped]").is_displayed():
            expand_dropped(driver)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        full_page_screenshot(driver, str(args.out))
        for column in ("bm25", "llm"):
            print(column, driver.find_element(By.CSS_SELECTOR, f"[data-testid={column}-latency]").text)
        print(f"wrote {args.out}")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
