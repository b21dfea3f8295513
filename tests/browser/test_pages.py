"""The settings page, a school's own link and the РМО widget, in headless Chromium against the local stack."""

from __future__ import annotations

import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.conftest import ADMIN_TOKEN
from tools.sandboxes.alfacrm import DEFAULT_API_KEY, DEFAULT_EMAIL
from tools.sandboxes.uis import DEFAULT_TOKEN

pytestmark = pytest.mark.e2e


def api(stack: Any, method: str, path: str, body: Any = None, token: str = ADMIN_TOKEN) -> tuple[int, Any]:
    reply = httpx.request(
        method, f"{stack.url}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    return reply.status_code, reply.json() if reply.content else None


@pytest.fixture(scope="module")
def demo(stack: Any) -> dict[str, Any]:
    return stack.demo


def open_page(page: Any, stack: Any, token: str = ADMIN_TOKEN) -> None:
    page.goto(f"{stack.url}/ui/#token={token}")
    page.wait_for_selector("#workspace:not([hidden])")
    # the look-ups fill the selects asynchronously
    page.wait_for_selector("#chat-channels[data-loaded]", state="attached")
    page.wait_for_selector("#success-statuses[data-loaded]", state="attached")


def test_sign_in_fill_deals_from_look_ups_and_save(page, stack, demo, screenshots):
    page.goto(f"{stack.url}/ui/")
    page.fill("#sign-in-token", f"{stack.url}/ui/#token={ADMIN_TOKEN}")  # a pasted link works as well
    page.screenshot(path=str(screenshots / "sign-in.png"))
    page.click("#sign-in-form button[type=submit]")
    page.wait_for_selector("#success-statuses[data-loaded]", state="attached")
    assert "token" not in page.url
    assert page.evaluate("sessionStorage.getItem('alfacrm-uis-token')") == ADMIN_TOKEN

    assert page.input_value("#alfacrm-webhook") == demo["webhooks"]["alfacrm"]
    labels = page.eval_on_selector_all("#success-statuses option", "os => os.map(o => o.textContent)")
    assert "Пробное проведено" in labels and "Оплатил" in labels  # from the AlfaCRM sandbox's lead statuses
    page.select_option("#success-statuses", label=["Пробное проведено", "Оплатил"])
    page.select_option("#failure-statuses", label=["Отказ", "Не дозвонились"])
    page.click("#tab-deals button.save")
    page.wait_for_selector("#tab-deals .save-status:is(.ok, .bad)")
    assert "ok" in page.get_attribute("#tab-deals .save-status", "class"), page.text_content("#tab-deals .save-status")
    _, integration = api(stack, "GET", f"/integrations/{demo['id']}")
    first_sale = integration["settings"]["deals"]["first_sale"]
    assert sorted(first_sale["success_status_ids"]) == [4, 7]
    assert len(first_sale["failure_status_ids"]) == 2 and 5 in first_sale["failure_status_ids"]

    page.click("#check-alfacrm")
    page.wait_for_selector("#alfacrm-check.ok")
    page.screenshot(path=str(screenshots / "deals.png"), full_page=True)


def test_a_bad_title_template_is_shown_next_to_its_field_and_nothing_typed_is_lost(page, stack, demo, screenshots):
    open_page(page, stack)
    page.click("[data-tab=texts]")
    page.fill("#lost-title", "Чат {visitor_nme}")
    page.fill("#lost-due", "48")
    page.select_option("#chat-channels", label="WhatsApp школы (whatsapp)")
    page.click("#tab-texts button.save")
    error = page.wait_for_selector('.field-error[data-error-for="texts.chats.lost_chat_task.title"]')
    assert "visitor_nme" in error.text_content()
    # right under the title's row, and the title marked
    assert page.evaluate("document.querySelector('#lost-title').closest('.row').nextElementSibling.className") == (
        "field-error"
    )
    assert "invalid" in page.get_attribute("#lost-title", "class")
    assert page.input_value("#lost-title") == "Чат {visitor_nme}"
    assert page.input_value("#lost-due") == "48"
    assert "whatsapp" in str(page.eval_on_selector("#chat-channels", "s => [...s.selectedOptions].map(o => o.text)"))
    page.screenshot(path=str(screenshots / "validation-error.png"), full_page=False)
    _, stored = api(stack, "GET", f"/integrations/{demo['id']}")
    assert stored["settings"]["texts"]["chats"]["lost_chat_task"]["title"] != "Чат {visitor_nme}"

    # a rule about two fields (tags needed for "on tag") lands on the field it is about
    page.fill("#lost-title", "Чат {visitor_name}")
    page.select_option("#lead-on-event", "tag_set")
    page.click("#tab-texts button.save")
    tags_error = page.wait_for_selector('.field-error[data-error-for="texts.chats.create_lead.tags"]')
    assert "tags" in tags_error.text_content()
    page.select_option("#lead-on-event", "chat_finished")

    page.fill("#lost-title", "Чат ")
    page.click("#param-plus")
    page.click('#param-menu [data-param="visitor_phone"]')
    assert page.input_value("#lost-title") == "Чат {visitor_phone}"
    page.click("#lost-title")
    page.keyboard.press("Home")
    page.click("#param-plus")
    page.click('#param-menu [data-param="site"]')
    assert page.input_value("#lost-title") == "{site}Чат {visitor_phone}"
    page.click("#tab-texts button.save")
    page.wait_for_selector("#tab-texts .save-status.ok")
    assert page.query_selector(".field-error") is None
    _, stored = api(stack, "GET", f"/integrations/{demo['id']}")
    task = stored["settings"]["texts"]["chats"]["lost_chat_task"]
    assert task["title"] == "{site}Чат {visitor_phone}" and task["due_hours"] == 48
    assert stored["settings"]["texts"]["chats"]["filters"]["channels"] == ["302"]
    page.screenshot(path=str(screenshots / "texts.png"), full_page=True)


def test_the_comment_author_is_picked_from_the_alfacrm_users_and_cleared_back_to_the_api_user(page, stack, demo):
    """Issue 8.13: the author of the connector's comments is a setting; empty means the API user."""
    open_page(page, stack)
    page.click("[data-tab=texts]")
    page.wait_for_selector("#comment-author[data-loaded]", state="attached")
    labels = page.eval_on_selector_all("#comment-author option", "os => os.map(o => o.textContent)")
    assert labels[0] == "— пользователь API —" and "Ольга Менеджер" in labels  # the sandbox's users
    page.select_option("#comment-author", label="Ольга Менеджер")
    page.click("#tab-texts button.save")
    page.wait_for_selector("#tab-texts .save-status:is(.ok, .bad)")
    assert "ok" in page.get_attribute("#tab-texts .save-status", "class"), page.text_content("#tab-texts .save-status")
    _, stored = api(stack, "GET", f"/integrations/{demo['id']}")
    assert stored["settings"]["texts"]["comment_author_id"] == 2

    page.select_option("#comment-author", "")
    page.click("#tab-texts button.save")
    page.wait_for_selector("#tab-texts .save-status.ok")
    _, stored = api(stack, "GET", f"/integrations/{demo['id']}")
    assert stored["settings"]["texts"]["comment_author_id"] is None


def _sandbox_customer(stack: Any, name: str, phone: str) -> int:
    reply = httpx.post(
        f"{stack.sandboxes['alfacrm'].url}/_sandbox/ui/customer/create",
        json={"name": name, "is_study": 0, "lead_status_id": 1, "phone": [phone]},
        timeout=30,
    )
    reply.raise_for_status()
    return int(reply.json()["model"]["id"])


def test_deals_appear_after_a_sandbox_webhook_and_a_parked_item_is_replayed(page, stack, demo, screenshots):
    first = _sandbox_customer(stack, "Орлова Вера", "+79160000101")
    stack.wait_idle(timeout=60)
    # A webhook for the customer AlfaCRM will create next: the deal worker cannot read it yet and parks it.
    upcoming = first + 1
    event = {"branch_id": 1, "event": "create", "entity": "Customer", "entity_id": upcoming, "fields_old": [],
             "fields_new": {"name": "Зуев Глеб", "lead_status_id": 1}, "fields_rel": [], "user_id": 2,
             "datetime": "2026-11-25 10:15:00"}  # fmt: skip
    assert httpx.post(demo["webhooks"]["alfacrm"], content=json.dumps(event), timeout=30).status_code == 200
    stack.wait_idle(timeout=60)

    open_page(page, stack)
    page.click("[data-tab=raw]")
    page.wait_for_selector(f'#deals tr[data-deal="customer-{first}"]')
    parked = page.wait_for_selector("#parked tr[data-parked]")
    assert str(upcoming) in parked.text_content()
    page.click(f'#deals tr[data-deal="customer-{first}"]')
    history = page.wait_for_selector(f'#deals tr[data-deal="customer-{first}"] + tr.history:not([hidden])')
    assert "Новый" in history.text_content()
    # health: the webhooks the deal worker took, the parked one counted; the log says why it was parked
    health = page.wait_for_selector("#health [data-health]")
    assert health.get_attribute("data-health") == "attention"
    text = page.text_content("#health")
    assert "Последний webhook AlfaCRM: —" not in text and "Отложено: 1" in text
    # the key the log shows is the parked item's, the one replay takes
    parked_event = page.wait_for_selector(f'#events tr[data-event="Customer#{upcoming}#create#{event["datetime"]}"]')
    assert "отложено" in parked_event.text_content() and str(upcoming) in parked_event.text_content()
    page.screenshot(path=str(screenshots / "raw.png"), full_page=True)

    # one parked item replayed by its own button, once AlfaCRM has the customer
    assert _sandbox_customer(stack, "Зуев Глеб", "+79160000102") == upcoming
    stack.wait_idle(timeout=60)
    page.click(f'#parked tr[data-parked] [data-replay-key^="deal_event#Customer#{upcoming}#"]')
    page.wait_for_selector("#replay-status.ok")
    stack.wait_idle(timeout=60)
    page.click("#deals-refresh")
    page.wait_for_selector(f'#deals tr[data-deal="customer-{upcoming}"]')
    expect(page.locator("#parked tr[data-parked]")).to_have_count(0)
    expect(page.locator("#health")).to_contain_text("Отложено: 0")


def test_rotating_the_webhook_address_asks_first_and_the_old_address_stops(page, stack, demo):
    open_page(page, stack)
    old = page.input_value("#alfacrm-webhook")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#rotate-webhooks")
    expect(page.locator("#rotate-status")).to_have_text("Адреса не изменены")
    assert page.input_value("#alfacrm-webhook") == old

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#rotate-webhooks")
    page.wait_for_selector("#rotate-status.ok")
    new = page.input_value("#alfacrm-webhook")
    assert new != old and page.input_value("#uis-webhook") != demo["webhooks"]["uis"]
    shown = page.text_content("#rotate-result")  # the confirmation names both new addresses
    assert new in shown and page.input_value("#uis-webhook") in shown
    event = {"branch_id": 1, "event": "update", "entity": "Customer", "entity_id": 1, "fields_new": {}}
    assert httpx.post(old, content=json.dumps(event), timeout=30).status_code == 404
    assert httpx.post(new, content=json.dumps(event), timeout=30).status_code == 200
    stack.wait_idle(timeout=60)
    demo["webhooks"] = {"alfacrm": new, "uis": page.input_value("#uis-webhook")}  # later tests post to the new ones


def test_a_new_uis_key_is_stored_only_after_its_login_works_and_health_checks_the_logins(page, stack, demo):
    open_page(page, stack)
    page.fill("#cred-uis-token", "uis-token-nobody-issued")
    page.click("#save-credentials")
    expect(page.locator("#alfacrm-check.bad")).to_contain_text("UIS")
    assert page.input_value("#cred-uis-token") == "uis-token-nobody-issued"  # kept to correct, nothing stored

    stack.sandboxes["uis"].sandbox.set_token("uis-token-second")
    page.fill("#cred-uis-token", "uis-token-second")
    page.click("#save-credentials")
    expect(page.locator("#alfacrm-check.ok")).to_have_text("✓ Учётные данные проверены и сохранены")
    assert page.input_value("#cred-uis-token") == ""

    # the stored key is the one in use: revoke the old one and have health log in to both systems now
    stack.sandboxes["uis"].sandbox.set_token(DEFAULT_TOKEN, "access_token_invalid")
    try:
        page.click("[data-tab=raw]")
        page.wait_for_selector("#health [data-health]")
        page.click("#check-health")
        page.wait_for_selector("#check-health-status.ok")
        expect(page.locator('#health [data-credential="uis"]')).to_have_class("credential-ok")
        expect(page.locator('#health [data-credential="alfacrm"]')).to_have_class("credential-ok")
    finally:
        stack.sandboxes["uis"].sandbox.set_token(DEFAULT_TOKEN)


def test_a_schools_own_link_opens_only_its_school(browser, page, stack, demo, served_other_school):
    open_page(page, stack)
    if page.input_value("#integration-select") != demo["id"]:
        page.select_option("#integration-select", demo["id"])
        expect(page.locator("#alfacrm-webhook")).to_have_value(re.compile(demo["id"]))
    page.click("#issue-access")
    page.wait_for_selector("#access-result:not([hidden])")
    link = page.input_value("#access-url")
    assert re.fullmatch(rf"{re.escape(stack.url)}/ui/#token={demo['id']}\.[A-Za-z0-9_-]{{32}}", link)

    context = browser.new_context()
    school = context.new_page()
    try:
        school.goto(link)
        school.wait_for_selector("#workspace:not([hidden])")
        assert school.text_content("#school-name") == "Демо-школа (sandbox)"
        assert school.is_hidden("#operator")  # no other schools, no picker
        statuses = school.evaluate(
            """async ([other]) => {
                 const auth = {Authorization: `Bearer ${sessionStorage.getItem('alfacrm-uis-token')}`};
                 const get = async (path) => (await fetch('/' + path, {headers: auth})).status;
                 return [await get('integrations'), await get('integrations/' + other),
                         await get('integrations/' + other + '/deals')];
               }""",
            [served_other_school],
        )
        assert statuses == [403, 403, 403]
    finally:
        context.close()


@pytest.fixture(scope="module")
def served_other_school(stack: Any) -> str:
    status, created = api(
        stack,
        "POST",
        "/integrations",
        {
            "name": "Другая школа",
            "alfacrm": {"hostname": stack.sandboxes["alfacrm"].url, "email": DEFAULT_EMAIL, "api_key": DEFAULT_API_KEY},
            "uis": {"api_url": f"{stack.sandboxes['uis'].url}/v2.0", "access_token": DEFAULT_TOKEN},
        },
    )
    assert status == 201, created
    return str(created["id"])


# ------------------------------------------------------------------------------------------- РМО widget
CARD = """<!doctype html><html lang="ru"><head><meta charset="utf-8"><title>Клиент — AlfaCRM</title></head>
<body><h1>Смирнова Анна Сергеевна</h1>
<div class="customer-phone"><a href="tel:+7 (916) 123-45-67">+7 (916) 123-45-67</a></div>
<button id="host-action" onclick="this.dataset.clicks = (+(this.dataset.clicks || 0) + 1)">Добавить урок</button>
<script src="{widget}" async></script></body></html>"""

WORKPLACE = """<!doctype html><html><head><meta charset="utf-8"><title>РМО</title></head><body>
<h2>Рабочее место оператора (заглушка)</h2><ul id="got"></ul>
<script>
window.addEventListener("message", function (e) {
  var li = document.createElement("li");
  li.textContent = e.data.type + " " + e.data.phone;
  document.getElementById("got").appendChild(li);
  e.source.postMessage({type: "search_results", items: []}, e.origin);
});
</script></body></html>"""


@pytest.fixture(scope="module")
def alfacrm_pages(stack: Any, demo: dict[str, Any]) -> Any:
    """A stub AlfaCRM customer card (which loads the widget) and a stub UIS workplace, on another origin."""
    widget = f"{stack.url}/widget/alfacrm.js?integration={demo['id']}"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = CARD.replace("{widget}", widget) if self.path.startswith("/company/") else WORKPLACE
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def _widget_settings(stack: Any, demo: dict[str, Any], workplace_url: str) -> None:
    _, integration = api(stack, "GET", f"/integrations/{demo['id']}")
    settings = integration["settings"]
    settings["widget"] = {"enabled": True, "workplace_url": workplace_url, "open_in": "iframe"}
    status, body = api(stack, "PUT", f"/integrations/{demo['id']}/settings", settings)
    assert status == 200, body


def test_widget_opens_the_workplace_with_the_customers_phone(page, stack, demo, alfacrm_pages, screenshots):
    _widget_settings(stack, demo, f"{alfacrm_pages}/workplace")
    page.goto(f"{alfacrm_pages}/company/1/customer/view?id=1")
    page.click("#uis-rmo-widget")
    frame = page.frame_locator("[data-rmo-panel] iframe")
    frame.locator("#got li", has_text="search_channels +79161234567").wait_for()
    frame.locator("#got li", has_text="open_chat +79161234567").wait_for()
    assert page.is_hidden("[data-rmo-notice]")
    page.click("#host-action")
    assert page.get_attribute("#host-action", "data-clicks") == "1"
    page.screenshot(path=str(screenshots / "widget.png"))


def test_widget_leaves_the_card_working_when_the_workplace_is_down(page, stack, demo, alfacrm_pages):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    _widget_settings(stack, demo, f"http://127.0.0.1:{closed}/rmo")
    page.goto(f"{alfacrm_pages}/company/1/customer/view?id=1")
    page.click("#uis-rmo-widget")
    notice = page.wait_for_selector("[data-rmo-notice]:visible", timeout=15_000)
    assert "не отвечает" in notice.text_content()
    page.click("#host-action")
    page.click("#host-action")
    assert page.get_attribute("#host-action", "data-clicks") == "2"
    page.click("[data-rmo-panel] button[aria-label='Закрыть']")
    assert page.query_selector("[data-rmo-panel]") is None
    assert page.is_visible("#uis-rmo-widget")


def test_widget_of_an_unknown_integration_is_a_harmless_404(stack):
    reply = httpx.get(f"{stack.url}/widget/alfacrm.js?integration=ffff", timeout=10)
    assert reply.status_code == 404 and reply.headers["content-type"].startswith("text/javascript")
    assert reply.text.startswith("/*")


def test_api_docs_render_the_generated_openapi_document(page, stack):
    page.goto(f"{stack.url}/docs")
    page.wait_for_selector(".opblock")
    assert page.locator(".opblock").count() >= 14
    assert "/integrations/{integration_id}/access" in page.text_content(".swagger-ui")
