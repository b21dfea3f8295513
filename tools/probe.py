"""`make probe` (`python -m tools.probe`): check the connector's assumptions against a school's own accounts.

Cheap and read-only by default (about one call per check; refused UIS calls cost no points): it prints a
table — assumption, what the account answered, whether the assumption holds — so a school or an operator can
confirm the connector before going live. docs/external-apis.md lists every assumption and its source.

Environment:
  ALFACRM_HOSTNAME, ALFACRM_EMAIL, ALFACRM_API_KEY, ALFACRM_BRANCH_ID (default 1)
  UIS_API_URL (default https://dataapi.uiscom.ru/v2.0), UIS_ACCESS_TOKEN
  PROBE_PHONE        a phone of a customer the AlfaCRM account holds: which search spellings find it
  PROBE_CONTACT      the ext_id of a UIS deal contact kept for tests: with --write-contact, its update shape
  TIMEZONE           the zone the integration would use (default Europe/Moscow), compared with UIS's
Exit status: 0 when nothing contradicts an assumption, 1 when something does, 2 on a missing setting.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from connector.alfacrm.client import ALL_CUSTOMERS, AlfaCrmClient
from connector.alfacrm.models import LOG_EVENTS, to_datetime
from connector.errors import AlfaCrmError, ConnectorError, UisComponentMissing, UisError
from connector.phones import national_digits, to_e164
from connector.uis import columns
from connector.uis.client import FEATURE_METHODS, UisClient, component_text

HOLDS, FAILS, UNKNOWN, SKIPPED = "holds", "DOES NOT HOLD", "unknown", "skipped"


@dataclass
class Row:
    system: str
    assumption: str
    answer: str
    verdict: str


@dataclass
class Options:
    branch_id: int = 1
    phone: str | None = None
    contact: str | None = None
    write_contact: bool = False
    timezone: str = "Europe/Moscow"
    region: str = "RU"


Check = Callable[[], Row | list[Row]]


def _guard(system: str, assumption: str, check: Check) -> list[Row]:
    try:
        out = check()
    except ConnectorError as exc:
        return [Row(system, assumption, f"error: {exc.message}", UNKNOWN)]
    return out if isinstance(out, list) else [out]


# --- AlfaCRM ---------------------------------------------------------------------------------------------------
def alfacrm_checks(client: AlfaCrmClient, opts: Options) -> list[Row]:
    rows: list[Row] = []
    a = "AlfaCRM"

    def login() -> Row:
        token = client.login()
        ok = len(token) == 32 and all(ch in "0123456789abcdef" for ch in token.lower())
        return Row(a, "auth/login gives a 32-hex token", f"a {len(token)}-character token", HOLDS if ok else FAILS)

    def customers() -> list[Row]:
        page = client.index("customer", ALL_CUSTOMERS, branch_id=opts.branch_id)
        flags = sorted({k for item in page.items for k in ("removed", "is_removed", "is_archived") if k in item})
        return [
            Row(
                a,
                "index pages hold at most 50 items",
                f"{page.count} of {page.total} on page 0",
                HOLDS if page.count <= 50 else FAILS,
            ),
            Row(
                a,
                "customer records carry no archive flag (lead_reject_id tells a refusal)",
                f"archive fields seen: {', '.join(flags) or 'none'}" if page.items else "no customers",
                (HOLDS if not flags else FAILS) if page.items else UNKNOWN,
            ),
        ]

    def log() -> list[Row]:
        page = client.index("log", {"entity": "Customer"}, branch_id=opts.branch_id)
        if not page.items:
            return [Row(a, "log/index event is 1/2/3, entries newest first", "the log is empty", UNKNOWN)]
        events = {item.get("event") for item in page.items}
        ints = all(isinstance(e, int) and e in LOG_EVENTS for e in events)
        shapes = sorted({type(item.get("fields_new")).__name__ for item in page.items})
        times = [to_datetime(item.get("date_time")) for item in page.items if item.get("date_time")]
        order = UNKNOWN
        if len(times) >= 2 and times[0] != times[-1]:
            order = HOLDS if times[0] > times[-1] else FAILS  # type: ignore[operator]
        return [
            Row(
                a,
                "log/index `event` is an integer 1/2/3",
                f"events seen: {sorted(map(str, events))}",
                HOLDS if ints else FAILS,
            ),
            Row(
                a,
                "log/index fields are maps or lists of one-key maps",
                f"fields_new as {', '.join(shapes)}",
                HOLDS if set(shapes) <= {"dict", "list"} else FAILS,
            ),
            Row(
                a,
                "log/index lists the newest entries first",
                f"first {times[0] if times else '-'}, last {times[-1] if times else '-'}",
                order,
            ),
        ]

    def pay_items() -> Row:
        items = client.pay_items(opts.branch_id)
        with_types = [i for i in items if i.pay_type_ids]
        text = ", ".join(f"{i.id} {i.name} {i.pay_type_ids}" for i in items[:6]) or "none"
        return Row(a, "pay-item lists items with pay_type_ids", text, HOLDS if with_types else UNKNOWN)

    def api_user() -> Row:
        found = client.api_user_id(opts.branch_id)
        return Row(
            a,
            "the API user is among the users (default comment author)",
            f"user id {found}" if found is not None else "not found (user/index absent or no such e-mail)",
            HOLDS if found is not None else FAILS,
        )

    rows += _guard(a, "login", login)
    rows += _guard(a, "customer records", customers)
    rows += _guard(a, "log/index", log)
    rows += _guard(a, "pay items", pay_items)
    rows += _guard(a, "API user", api_user)
    rows += _guard(a, "phone search", lambda: phone_spellings(client, opts))
    return rows


def phone_spellings(client: AlfaCrmClient, opts: Options) -> Row:
    assumption = "customer/index finds a phone by one of: national digits, 7XXXXXXXXXX, E.164, as typed"
    if not opts.phone:
        return Row("AlfaCRM", assumption, "set PROBE_PHONE to a phone a customer has", SKIPPED)
    e164 = to_e164(opts.phone, opts.region)
    if e164 is None:
        return Row("AlfaCRM", assumption, f"{opts.phone!r} is not a phone number", UNKNOWN)
    spellings = {
        "national digits": national_digits(e164) or "",
        "7XXXXXXXXXX": e164.removeprefix("+"),
        "E.164": e164,
        "as typed": opts.phone.strip(),
    }
    found = []
    for label, text in spellings.items():
        items = client.index("customer", {**ALL_CUSTOMERS, "phone": text}, branch_id=opts.branch_id).items
        if any(to_e164(p, opts.region) == e164 for item in items for p in item.get("phone") or []):
            found.append(label)
    answer = f"found with: {', '.join(found)}" if found else "no spelling found the customer"
    return Row("AlfaCRM", assumption, answer, HOLDS if found else FAILS)


# --- UIS --------------------------------------------------------------------------------------------------------
def uis_checks(client: UisClient, opts: Options) -> list[Row]:
    u = "UIS"
    rows: list[Row] = []

    def account() -> Row:
        info = client.check_auth()
        zone = info.get("timezone")
        return Row(
            u,
            f"the account's zone is the integration's ({opts.timezone})",
            f"get.account: {zone}",
            HOLDS if zone == opts.timezone else (UNKNOWN if not zone else FAILS),
        )

    def components() -> list[Row]:
        missing = client.missing_components(["deals", "chats", "requests", "visitors"])
        out = []
        for feature, method in FEATURE_METHODS.items():
            exc = missing.get(feature)
            answer = f"missing: {component_text(exc)}" if isinstance(exc, UisComponentMissing) else "switched on"
            out.append(Row(u, f"components allow {method}", answer, FAILS if exc else HOLDS))
        return out

    def defaults(method: str, documented_default: frozenset[str], not_default: list[str]) -> Row:
        till = datetime.now().replace(microsecond=0)
        since = till - timedelta(days=89)
        # no `fields`: what UIS returns by default (one point)
        data = client.call(method, {"date_from": _fmt(since), "date_till": _fmt(till), "limit": 1}).get("data") or []
        assumption = f"{method} without `fields` returns its default columns only ({', '.join(not_default)} not)"
        if not data:
            return Row(u, assumption, "no rows in the last 89 days", UNKNOWN)
        got = set(data[0])
        extra = sorted(got & set(not_default))
        answer = f"{len(got)} columns; of the non-default ones: {', '.join(extra) or 'none'}"
        return Row(u, assumption, answer, HOLDS if not extra and got <= documented_default else FAILS)

    def error_field() -> Row:
        # a refused read costs nothing: a nested filter on a column the method lacks
        tree = {"filters": [{"field": "no_such_column", "operator": "=", "value": 1}], "condition": "and"}
        assumption = "error data.field names nested parameters with dots and no index"
        try:
            client.call("get.deals_history", {"filter": tree, "limit": 1})
        except UisError as exc:
            field = exc.field or ""
            ok = "[" not in field and ("." in field or field == "filter")
            return Row(u, assumption, f"{exc.mnemonic}: field {field or '-'}", HOLDS if ok else FAILS)
        return Row(u, assumption, "the filter was accepted", UNKNOWN)

    rows += _guard(u, "login", account)
    rows += _guard(u, "components", components)
    rows += _guard(
        u,
        "get.chats_report defaults",
        lambda: defaults(
            "get.chats_report",
            columns.CHATS_REPORT_DEFAULT,
            ["chat_channel_type", "site_domain_name", "tags", "utm_source"],
        ),
    )
    rows += _guard(
        u,
        "get.offline_messages_report defaults",
        lambda: defaults(
            "get.offline_messages_report",
            columns.OFFLINE_MESSAGES_REPORT_DEFAULT,
            ["date_time", "site_domain_name", "utm_source"],
        ),
    )
    rows += _guard(u, "error fields", error_field)
    rows += _guard(u, "contact update", lambda: contact_update(client, opts))
    return rows


def contact_update(client: UisClient, opts: Options) -> Row:
    assumption = "update.deal_contacts takes one contact at the top level and refuses a `contacts` list"
    if not (opts.write_contact and opts.contact):
        return Row("UIS", assumption, "needs --write-contact and PROBE_CONTACT (a test contact)", SKIPPED)
    [current] = client.get_deal_contacts([opts.contact]) or [None]
    if current is None:
        return Row("UIS", assumption, f"no deal contact {opts.contact}", UNKNOWN)
    same = {k: current.get(k) for k in ("ext_id", "name") if current.get(k) is not None}
    try:
        client.call("update.deal_contacts", {"contacts": [same]})
        listed = "accepted"
    except UisError as exc:
        listed = f"refused ({exc.mnemonic})"
    client.update_deal_contact(same)  # the same name again: nothing changes
    return Row("UIS", assumption, f"a list: {listed}; one contact: accepted", HOLDS if listed != "accepted" else FAILS)


def _fmt(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


# --- running ----------------------------------------------------------------------------------------------------
def run(alfacrm: AlfaCrmClient | None, uis: UisClient | None, opts: Options) -> list[Row]:
    rows: list[Row] = []
    if alfacrm is not None:
        rows += alfacrm_checks(alfacrm, opts)
    if uis is not None:
        rows += uis_checks(uis, opts)
    return rows


def render(rows: list[Row]) -> str:
    widths = [max(len(getattr(r, f)) for r in rows) for f in ("system", "assumption", "answer")] if rows else [0, 0, 0]
    widths = [min(w, limit) for w, limit in zip(widths, (8, 80, 60), strict=True)]
    lines = []
    for r in rows:
        cells = [r.system.ljust(widths[0]), r.assumption.ljust(widths[1]), r.answer.ljust(widths[2]), r.verdict]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None, env: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write-contact", action="store_true", help="also check update.deal_contacts on PROBE_CONTACT")
    args = parser.parse_args(argv)
    opts = Options(
        branch_id=int(env.get("ALFACRM_BRANCH_ID") or 1),
        phone=env.get("PROBE_PHONE") or None,
        contact=env.get("PROBE_CONTACT") or None,
        write_contact=args.write_contact,
        timezone=env.get("TIMEZONE") or "Europe/Moscow",
    )
    alfacrm = uis = None
    if env.get("ALFACRM_HOSTNAME") and env.get("ALFACRM_EMAIL") and env.get("ALFACRM_API_KEY"):
        alfacrm = AlfaCrmClient(env["ALFACRM_HOSTNAME"], env["ALFACRM_EMAIL"], env["ALFACRM_API_KEY"])
    if env.get("UIS_ACCESS_TOKEN"):
        uis = UisClient(env.get("UIS_API_URL") or "https://dataapi.uiscom.ru/v2.0", env["UIS_ACCESS_TOKEN"])
    if alfacrm is None and uis is None:
        print("set ALFACRM_HOSTNAME/ALFACRM_EMAIL/ALFACRM_API_KEY and/or UIS_ACCESS_TOKEN", file=sys.stderr)
        return 2
    rows = run(alfacrm, uis, opts)
    print(render(rows))
    spent = [f"AlfaCRM {alfacrm.calls} requests" if alfacrm else "", f"UIS {uis.calls} points" if uis else ""]
    print("\nspent: " + ", ".join(s for s in spent if s))
    return 1 if any(r.verdict == FAILS for r in rows) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except AlfaCrmError as exc:  # pragma: no cover - printed for the operator
        print(f"AlfaCRM: {exc.message}", file=sys.stderr)
        sys.exit(1)
