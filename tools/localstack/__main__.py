"""`python -m tools.localstack` (what `make run` calls). Environment: PORT, ADMIN_TOKEN, SANDBOX (contract.md).

Also LOCAL_SCHEDULES=0 to fire schedules only on demand (POST /_local/schedules/{name}).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

from tools.localstack.stack import LocalStack


def _flag(name: str, default: str) -> bool:
    return os.environ.get(name, default).strip().lower() in {"1", "true", "yes", "on"}


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # werkzeug logs every request of moto, the sandboxes and the API; keep the console for the stack
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    started = time.monotonic()
    token_given = bool(os.environ.get("ADMIN_TOKEN"))
    stack = LocalStack(
        port=int(os.environ.get("PORT", "3000")),
        admin_token=os.environ.get("ADMIN_TOKEN") or None,
        sandbox=_flag("SANDBOX", "1"),
        run_schedules=_flag("LOCAL_SCHEDULES", "1"),
    )
    stopping = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)

    url = stack.start()
    print(f"admin token: {stack.admin_token}" + ("" if token_given else "  (generated; set ADMIN_TOKEN to fix it)"))
    for name, served in stack.sandboxes.items():
        print(f"{name} sandbox: {served.url}")
    if stack.demo:
        print(f"demo integration: {stack.demo['id']}")
        for kind, hook in stack.demo["webhooks"].items():
            print(f"  {kind} webhook: {hook}")
    # the token in the URL fragment: browsers never send it, the page moves it to the tab's sessionStorage
    print(f"settings page: {url}/ui/#token={stack.admin_token}")
    print(f"API docs: {url}/docs")
    print(f"started in {time.monotonic() - started:.1f}s")
    print(f"ready {url}", flush=True)
    stopping.wait()
    print("stopping", flush=True)
    stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
