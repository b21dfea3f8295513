"""The pages function: the settings page's files, the widget with its settings inlined, the docs; nothing else."""

from __future__ import annotations

import pytest

from tests.api.builders import api_event, stored_integration
from tests.handlers import load_handler

pages = load_handler("pages")


def get(ctx, path, query=None):
    return pages(api_event("GET", path, query=query), ctx)


def test_the_page_and_its_files_are_served_with_a_strict_policy(lambda_context):
    reply = get(lambda_context, "/ui/")
    assert reply["statusCode"] == 200 and reply["headers"]["Content-Type"].startswith("text/html")
    assert '<html lang="ru">' in reply["body"]
    assert "script-src 'self'" in reply["headers"]["Content-Security-Policy"]
    assert get(lambda_context, "/ui/app.js")["headers"]["Content-Type"].startswith("text/javascript")
    moved = get(lambda_context, "/ui")
    assert moved["statusCode"] == 301 and moved["headers"]["Location"] == "ui/"
    docs = get(lambda_context, "/docs")
    assert docs["statusCode"] == 200 and "swagger-ui-bundle.js" in docs["body"]
    assert get(lambda_context, "/docs/openapi.json")["body"].startswith("{")


@pytest.mark.parametrize(
    "path", ["/ui/../app.py", "/ui/%2e%2e/app.py", "/ui/.hidden", "/ui//etc/passwd", "/ui/nope.js", "/docs/../../x"]
)
def test_nothing_outside_the_static_folder_is_served(lambda_context, path):
    assert get(lambda_context, path)["statusCode"] == 404


def test_the_widget_carries_its_integrations_settings(lambda_context, store):
    stored_integration(
        store,
        settings={
            "widget": {"enabled": True, "workplace_url": "https://rmo.example.ru/</script>", "open_in": "window"}
        },
    )
    reply = get(lambda_context, "/widget/alfacrm.js", {"integration": "0a1b2c3d"})
    assert reply["statusCode"] == 200
    body = reply["body"]
    assert '"workplace_url": "https://rmo.example.ru/\\u003c/script>"' in body
    assert "rmo.example.ru/</script>" not in body
    assert '"open_in": "window"' in body and "__WIDGET_CONFIG__" not in body
    for unknown in ("ffff", "../x", ""):
        missing = get(lambda_context, "/widget/alfacrm.js", {"integration": unknown})
        assert missing["statusCode"] == 404 and missing["body"].startswith("/*")


@pytest.mark.parametrize(
    "url, error",
    [
        ("http://rmo.example.ru", "must be https"),
        ("ftp://rmo.example.ru", "https URL"),
        ("https://user:pw@rmo.example.ru", "user name"),
        (None, "give the workplace URL"),
    ],
)
def test_the_workplace_url_is_validated(url, error):
    from connector.errors import ValidationFailed
    from connector.settings import parse_settings

    with pytest.raises(ValidationFailed) as caught:
        parse_settings({"widget": {"enabled": True, "workplace_url": url}})
    assert caught.value.field == "widget.workplace_url" and error in caught.value.message
