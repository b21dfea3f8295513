"""The README's curl examples ("Connecting a school") run as written against the local stack.

Only the addresses (the local stack and sandbox ports) and the admin token are swapped for the test
stack's; every line is otherwise the README's own.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ADMIN_TOKEN

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.e2e


def readme_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Connecting a school", 1)[1].split("\n## ", 1)[0]
    return [re.sub(r"^ {3}", "", b, flags=re.M) for b in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def replies(stdout: str) -> list[dict]:
    decoder, out, at = json.JSONDecoder(), [], 0
    stdout = stdout.strip()
    while at < len(stdout):
        value, end = decoder.raw_decode(stdout, at)
        out.append(value)
        at = end
        while at < len(stdout) and stdout[at].isspace():
            at += 1
    return out


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_curl_examples_work_as_written(start_local_stack):
    stack = start_local_stack(sandbox=True)
    blocks = readme_blocks()
    assert len(blocks) >= 4 and all("curl" in b for b in blocks)
    for block in blocks:
        assert "Content-Type" not in block  # the point: no header needed

    def local(block: str) -> str:
        return (
            block.replace("http://127.0.0.1:3000", stack.url)
            .replace("http://127.0.0.1:3001", stack.sandboxes["alfacrm"].url)
            .replace("http://127.0.0.1:3002", stack.sandboxes["uis"].url)
            .replace("TOKEN=demo", f"TOKEN={ADMIN_TOKEN}")
        )

    def run(script: str) -> list[dict]:
        done = subprocess.run(["bash", "-c", "set -e\n" + script], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        got = replies(done.stdout)
        assert got and not [r for r in got if "error" in r], done.stdout
        return got

    setup = local(blocks[0]).splitlines()[0]  # API=… TOKEN=…
    [created] = run(local(blocks[0]))
    assert created["webhooks"]["alfacrm"].startswith(f"{stack.url}/hooks/alfacrm/{created['id']}/")
    results = [run(f"{setup}\nID={created['id']}\n{local(block)}") for block in blocks[1:]]
    statuses, settings = results[0]
    assert any(s["name"] == "Оплатил" for s in statuses["items"])
    assert settings["deals"]["first_sale"]["success_status_ids"] == [4]
    assert results[1] == [{"active": True}]
    assert results[2][0]["url"].startswith(f"{stack.url}/ui/#token={created['id']}.")
