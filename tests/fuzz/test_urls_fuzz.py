"""The hosts of a create body (hypothesis): whatever text is given as `alfacrm.hostname` or `uis.api_url`,
the check either refuses it naming the field (a 422) or returns a URL the HTTP client can request — never a
ValueError or httpx.InvalidURL later (a 5xx), under the local stack's rules and under AWS's."""

from __future__ import annotations

import httpx
import pytest
from connector.alfacrm.client import base_url
from connector.errors import UnsafeHostname
from connector.settings import check_alfacrm_hostname, check_uis_api_url
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.report import examples, timing

HOST_CHARS = st.sampled_from([*"abcz09.-_[]:%@/?#\\ ", "\x00", "\r", "\n", "\t", "я", "\u3002", "xn--", "::"])
hosts = st.one_of(
    st.sampled_from(["school.s20.online", "127.0.0.1", "localhost", "[::1]", "[fe80::1%eth0]", "10.0.0.1", "a.b"]),
    st.lists(HOST_CHARS, max_size=16).map("".join),
)
ports = st.one_of(
    st.just(""), st.integers(-5, 70_000).map(lambda p: f":{p}"), st.sampled_from([":", ":abc", ":443", ": 80", ":٣"])
)
urls = st.one_of(
    st.builds(
        lambda scheme, host, port, path: f"{scheme}{host}{port}{path}",
        st.sampled_from(["https://", "http://", "ftp://", "//", "", "HTTPS://", "https:/"]),
        hosts,
        ports,
        st.sampled_from(["", "/", "/v2.0", "/v2api/", "?x=1", "#f", "/\x00", "/ a"]),
    ),
    st.text(max_size=30),
)


@pytest.mark.parametrize("allow_insecure", [True, False])
@settings(max_examples=examples(200))
@given(url=urls)
def test_alfacrm_hostname_is_refused_naming_the_field_or_is_a_url_httpx_requests(url, allow_insecure):
    try:
        with timing("alfacrm.hostname check (hypothesis)").reply():
            stored = check_alfacrm_hostname(url, allow_insecure=allow_insecure)
    except UnsafeHostname as exc:
        assert exc.field == "alfacrm.hostname" and exc.message.startswith("alfacrm.hostname: ")
        return
    httpx.Request("POST", f"{base_url(stored)}auth/login")


@pytest.mark.parametrize("allow_insecure", [True, False])
@settings(max_examples=examples(200))
@given(url=urls)
def test_uis_api_url_is_refused_naming_the_field_or_is_a_url_httpx_requests(url, allow_insecure):
    try:
        with timing("uis.api_url check (hypothesis)").reply():
            stored = check_uis_api_url(url, allow_insecure=allow_insecure)
    except UnsafeHostname as exc:
        assert exc.field == "uis.api_url" and exc.message.startswith("uis.api_url: ")
        return
    httpx.Request("POST", stored)
