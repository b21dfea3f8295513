"""Security rules a reviewer would check: public https hosts only, personal data masked in logs."""

from __future__ import annotations

import json
import logging

import pytest
from connector.errors import UnsafeHostname
from connector.observability import MaskingFormatter, mask
from connector.settings import check_alfacrm_hostname, check_uis_api_url


@pytest.mark.parametrize(
    "given, stored",
    [
        ("school.s20.online", "school.s20.online"),
        ("Name.AlfaCRM.pro", "name.alfacrm.pro"),
        ("https://crm.my-school.ru/", "crm.my-school.ru"),
    ],
)
def test_public_alfacrm_names_are_accepted(given, stored):
    assert check_alfacrm_hostname(given, allow_insecure=False) == stored


@pytest.mark.parametrize(
    "given",
    [
        "http://school.s20.online",  # not https
        "10.0.0.5",
        "127.0.0.1",
        "[::1]",
        "https://169.254.169.254",  # the instance metadata address
        "localhost",
        "crm.internal",
        "printer.local",
        "intranet",  # single label
        "https://school.s20.online:8443",
        "https://school.s20.online/v2api/",
        "http://127.0.0.1:8081",
    ],
)
def test_private_or_insecure_alfacrm_hosts_are_refused_outside_the_local_stack(given):
    with pytest.raises(UnsafeHostname) as err:
        check_alfacrm_hostname(given, allow_insecure=False)
    assert err.value.field == "alfacrm.hostname"


def test_local_stack_accepts_a_sandbox_url():
    assert check_alfacrm_hostname("http://127.0.0.1:8081/", allow_insecure=True) == "http://127.0.0.1:8081"


@pytest.mark.parametrize("url", ["https://dataapi.uiscom.ru/v2.0", "https://dataapi.comagic.ru/v2.0/"])
def test_uis_data_api_urls(url):
    assert check_uis_api_url(url, allow_insecure=False) == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    [
        "http://dataapi.uiscom.ru/v2.0",
        "https://10.1.2.3/v2.0",
        "https://user:pw@dataapi.uiscom.ru/v2.0",
        "https://dataapi.uiscom.ru:8443/v2.0",
        "ftp://dataapi.uiscom.ru",
        "https://uis.corp/v2.0",
    ],
)
def test_unsafe_uis_urls_are_refused(url):
    with pytest.raises(UnsafeHostname) as err:
        check_uis_api_url(url, allow_insecure=False)
    assert err.value.field == "uis.api_url"


def test_log_records_mask_phones_emails_names_and_drop_secrets():
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "Лид +7(916)123-45-67, anna@example.ru", None, None)
    record.customer = {
        "name": "Анна Смирнова",
        "phone": ["89161234567"],
        "email": ["anna@example.ru"],
        "api_key": "k-123",
        "id": 145,
    }
    line = MaskingFormatter().format(record)
    parsed = json.loads(line)
    for leaked in ("123-45-67", "89161234567", "anna@example.ru", "Смирнова", "k-123"):
        assert leaked not in line
    assert parsed["customer"]["id"] == 145
    assert parsed["customer"]["phone"] == ["***67"]
    assert parsed["customer"]["api_key"] == "[secret]"


def test_mask_keeps_ids_and_statuses():
    assert mask({"lead_status_id": 3, "status": "succeed", "visitor_phone_number": "79161234567"}) == {
        "lead_status_id": 3,
        "status": "succeed",
        "visitor_phone_number": "***67",
    }


def test_phones_given_as_numbers_are_masked_too():
    assert mask({"visitor_phone_number": 79161234567, "chat_id": 5000003}) == {
        "visitor_phone_number": "***67",
        "chat_id": 5000003,
    }


def test_dates_in_log_text_are_not_taken_for_phones():
    from connector.observability import mask_text

    assert mask_text("Pay#6#create#2026-11-25 06:17:05") == "Pay#6#create#2026-11-25 06:17:05"
    assert mask_text("due 25.11.2026, call +7 916 123-45-67") == "due 25.11.2026, call ***67"
