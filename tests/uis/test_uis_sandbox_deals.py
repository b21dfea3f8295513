"""The sandbox's deals API through UisClient: funnels, contacts, user fields and upload.deals_history rules."""

from __future__ import annotations

import pytest
from connector.errors import UisComponentMissing, UisValidationError

from tests.uis.builders import deal_row, funnel_params


@pytest.fixture
def funnel(client):
    client.call("create.sales_funnel", funnel_params())
    client.create_deal_contacts(
        [
            {"ext_id": "c1", "name": "Мария", "phone_numbers": ["+79161234567"], "emails": ["m@example.com"]},
            {"ext_id": "c2", "name": "Олег", "phone_numbers": ["79031112233"]},
        ]
    )
    client.create_deal_user_field("teacher", "Преподаватель", "string")
    client.create_deal_user_field("hours", "Часы", "numeric")
    return "first_sale"


def _refused(client, method, params):
    with pytest.raises(UisValidationError) as caught:
        client.call(method, params)
    return caught.value


# --- funnels ------------------------------------------------------------------------------------
def test_created_funnel_reads_back_with_closing_stages_after_in_process(client, sandbox):
    client.call("create.sales_funnel", funnel_params(in_process=2))

    [funnel] = client.get_sales_funnels("first_sale")

    assert funnel["name"] == "Первая продажа"
    assert [(s["stage_ext_id"], s["stage_status"], s["stage_order"]) for s in funnel["stages"]] == [
        ("first_sale:s0", "in_process", 10),
        ("first_sale:s1", "in_process", 20),
        ("first_sale:won", "success", 10010),
        ("first_sale:lost", "failed", 10020),
    ]


@pytest.mark.parametrize(
    ("mutate", "mnemonic", "field"),
    [
        (
            lambda p: p["stages"].update(success=[p["stages"]["success"]] * 2),
            "invalid_parameter_value",
            "stages.success",
        ),
        (lambda p: p["stages"].pop("failed"), "required_parameter_missed", "stages.failed"),
        (lambda p: p["stages"].update(in_process=[]), "invalid_parameter_value", "stages.in_process"),
        (
            lambda p: p["stages"].update(
                in_process=[{"ext_id": f"s{i}", "name": "x", "order": i + 1} for i in range(101)]
            ),
            "invalid_parameter_value",
            "stages.in_process",
        ),
        (
            lambda p: p["stages"]["in_process"][1].update(order=10001),
            "invalid_parameter_value",
            "stages.in_process.order",
        ),
        (
            lambda p: p["stages"]["in_process"][1].update(ext_id="first_sale:s0"),
            "duplicate_entity",
            "stages.in_process.ext_id",
        ),
    ],
    ids=["two-success", "no-failed", "no-in-process", "101-in-process", "order-over-10000", "duplicate-stage"],
)
def test_invalid_funnels_are_refused_and_not_stored(client, sandbox, mutate, mnemonic, field):
    params = funnel_params()
    mutate(params)

    error = _refused(client, "create.sales_funnel", params)

    assert (error.mnemonic, error.field) == (mnemonic, field)
    assert sandbox.state()["funnels"] == []


def test_duplicate_funnel_ext_id_is_duplicate_entity(client, funnel):
    assert _refused(client, "create.sales_funnel", funnel_params()).mnemonic == "duplicate_entity"


def test_funnel_and_stages_can_be_renamed_added_reordered_and_deleted(client, funnel):
    # When the funnel follows renamed and added AlfaCRM statuses
    client.call("update.sales_funnel", {"ext_id": funnel, "name": "Первая продажа (школа)"})
    client.create_sales_funnel_stage(funnel, "first_sale:s9", "Пробный урок", 25)
    client.update_sales_funnel_stage(funnel, "first_sale:s1", name="Думает", order=35)
    client.update_sales_funnel_stage(funnel, "first_sale:won", name="Стал клиентом")
    client.delete_sales_funnel_stage(funnel, "first_sale:s2")

    # Then UIS holds the new shape
    [read] = client.get_sales_funnels(funnel)
    assert read["name"] == "Первая продажа (школа)"
    assert [(s["stage_ext_id"], s["stage_name"], s["stage_order"]) for s in read["stages"]] == [
        ("first_sale:s0", "Этап 0", 10),
        ("first_sale:s9", "Пробный урок", 25),
        ("first_sale:s1", "Думает", 35),
        ("first_sale:won", "Стал клиентом", 10010),
        ("first_sale:lost", "Отказ", 10020),
    ]


def test_closing_stages_cannot_be_deleted_and_duplicates_are_refused(client, funnel):
    with pytest.raises(UisValidationError):
        client.delete_sales_funnel_stage(funnel, "first_sale:won")
    with pytest.raises(UisValidationError) as caught:
        client.create_sales_funnel_stage(funnel, "first_sale:s0", "Ещё раз", 50)
    assert caught.value.mnemonic == "duplicate_entity"
    with pytest.raises(UisValidationError) as caught:
        client.create_sales_funnel_stage("nope", "x", "x", 50)
    assert caught.value.mnemonic == "entity_not_found"


# --- contacts, user fields, employees -----------------------------------------------------------
def test_contacts_duplicate_and_bad_phone_are_refused_whole(client, sandbox, funnel):
    error = _refused(
        client,
        "create.deal_contacts",
        {"contacts": [{"ext_id": "c3", "name": "Новый"}, {"ext_id": "c1", "name": "Мария"}]},
    )
    assert (error.mnemonic, error.field) == ("duplicate_entity", "contacts.ext_id")

    error = _refused(
        client, "create.deal_contacts", {"contacts": [{"ext_id": "c4", "name": "X", "phone_numbers": ["8 (916) 123"]}]}
    )
    assert (error.mnemonic, error.field) == ("invalid_parameter_value", "contacts.phone_numbers")
    assert {c["ext_id"] for c in sandbox.state()["contacts"]} == {"c1", "c2"}


def test_contact_update_replaces_phone_and_email_lists(client, sandbox, funnel):
    client.update_deal_contact({"ext_id": "c1", "phone_numbers": ["79990001122"], "emails": []})

    [c1] = [c for c in sandbox.state()["contacts"] if c["ext_id"] == "c1"]
    assert (c1["phone_numbers"], c1["emails"], c1["name"]) == (["79990001122"], [], "Мария")


def test_contact_update_takes_one_contact_at_the_top_level_and_refuses_a_list(client, sandbox, funnel):
    # ca_contact/update_deal_contacts documents ext_id, name, created_date_time, phone_numbers, emails at the top
    error = _refused(client, "update.deal_contacts", {"contacts": [{"ext_id": "c1", "name": "Мария Иванова"}]})
    assert (error.mnemonic, error.field) == ("unexpected_parameters", "contacts")
    assert _refused(client, "update.deal_contacts", {"name": "x"}).mnemonic == "required_parameter_missed"
    assert _refused(client, "update.deal_contacts", {"ext_id": "c9", "name": "x"}).field == "ext_id"

    client.call("update.deal_contacts", {"ext_id": "c1", "name": "Мария Иванова"})
    [c1] = [c for c in sandbox.state()["contacts"] if c["ext_id"] == "c1"]
    assert c1["name"] == "Мария Иванова" and c1["emails"] == ["m@example.com"]


def test_emails_repeated_within_a_contact_are_refused_on_create_and_update(client, sandbox, funnel):
    # ca_contact/create_deal_contacts: "E-mail должен быть уникальным в списке"
    twice = {"ext_id": "c5", "name": "Лена", "emails": ["lena@example.com", "Lena@Example.com"]}
    error = _refused(client, "create.deal_contacts", {"contacts": [twice]})
    assert (error.mnemonic, error.field) == ("invalid_parameter_value", "contacts.emails")
    error = _refused(client, "update.deal_contacts", {"ext_id": "c1", "emails": ["a@example.com", "a@example.com"]})
    assert (error.mnemonic, error.field) == ("invalid_parameter_value", "emails")
    assert {c["ext_id"] for c in sandbox.state()["contacts"]} == {"c1", "c2"}


def test_the_client_sends_contacts_in_uis_form_digits_without_plus_and_each_email_once(client, sandbox, funnel):
    client.create_deal_contacts(
        [{"ext_id": "c6", "name": "Ира", "phone_numbers": ["+79265554433"], "emails": ["ira@x.ru", "IRA@x.ru"]}]
    )
    client.update_deal_contact({"ext_id": "c2", "phone_numbers": ["+79031112233", "+79031112233"]})

    contacts = {c["ext_id"]: c for c in sandbox.state()["contacts"]}
    assert (contacts["c6"]["phone_numbers"], contacts["c6"]["emails"]) == (["79265554433"], ["ira@x.ru"])
    assert contacts["c2"]["phone_numbers"] == ["79031112233"]


def test_more_than_1000_contacts_are_refused(client):
    contacts = [{"ext_id": f"c{i}", "name": "x"} for i in range(1001)]
    assert _refused(client, "create.deal_contacts", {"contacts": contacts}).mnemonic == "data_limit_exceeded"


def test_user_fields_need_a_known_type_and_a_new_ext_id(client, funnel):
    assert _refused(client, "create.deal_user_field", {"ext_id": "x", "name": "x", "data_type": "date"}).field == (
        "data_type"
    )
    with pytest.raises(UisValidationError) as caught:
        client.create_deal_user_field("teacher", "Преподаватель")
    assert caught.value.mnemonic == "duplicate_entity"
    assert {f["ext_id"] for f in client.call("get.deal_user_fields", {})["data"]} == {"teacher", "hours"}


def test_deal_employees_are_created_once(client, sandbox):
    client.create_deal_employee("u1", "Анна Смирнова")
    with pytest.raises(UisValidationError):
        client.create_deal_employee("u1", "Анна Смирнова")
    assert sandbox.state()["deal_employees"] == [{"ext_id": "u1", "name": "Анна Смирнова"}]


# --- upload.deals_history -----------------------------------------------------------------------
def test_uploaded_path_is_stored_with_generated_intermediate_stages(client, sandbox, funnel):
    # Given a new deal whose first upload skips stage s1 on its way to success
    rows = [
        deal_row("d1", "first_sale:s0", "2025-03-01 10:00:00", contact_ext_ids=["c1"], main_contact_ext_id="c1"),
        deal_row(
            "d1",
            "first_sale:won",
            "2025-03-05 12:00:00",
            closed_date_time="2025-03-05 12:00:00",
            revenue=12000,
            user_fields=[{"ext_id": "teacher", "value": "Иванова"}],
            communication_id=90000001,
            communication_type="chat",
        ),
    ]

    # When it is uploaded
    client.upload_deals_history(rows)

    # Then UIS holds the whole path, the skipped stages flagged as generated
    [deal] = sandbox.state()["deals"]
    assert deal["path"] == [
        {"stage_ext_id": "first_sale:s0", "modified_stage_date_time": "2025-03-01 10:00:00", "is_generated": False},
        {"stage_ext_id": "first_sale:s1", "modified_stage_date_time": "2025-03-05 12:00:00", "is_generated": True},
        {"stage_ext_id": "first_sale:s2", "modified_stage_date_time": "2025-03-05 12:00:00", "is_generated": True},
        {"stage_ext_id": "first_sale:won", "modified_stage_date_time": "2025-03-05 12:00:00", "is_generated": False},
    ]
    assert (deal["revenue"], deal["closed_date_time"], deal["user_fields"]) == (
        12000,
        "2025-03-05 12:00:00",
        {"teacher": "Иванова"},
    )
    assert (deal["communication_id"], deal["communication_type"], deal["main_contact_ext_id"]) == (
        90000001,
        "chat",
        "c1",
    )
    # and get.deals_history reads one row per step
    history = client.get_deals_history(filter={"field": "ext_id", "operator": "=", "value": "d1"})
    assert [(h["stage_ext_id"], h["is_generated"]) for h in history] == [
        ("first_sale:s0", False),
        ("first_sale:s1", True),
        ("first_sale:s2", True),
        ("first_sale:won", False),
    ]


def test_one_bad_row_fails_the_whole_upload_naming_the_field_not_the_row(client, sandbox, funnel):
    # Given four good rows for two deals and a fifth whose stage time is before its creation
    rows = [
        deal_row("d1", "first_sale:s0", "2025-03-01 10:00:00"),
        deal_row("d1", "first_sale:s1", "2025-03-02 10:00:00"),
        deal_row("d2", "first_sale:s0", "2025-03-03 10:00:00"),
        deal_row("d2", "first_sale:s1", "2025-02-01 10:00:00"),
    ]

    # When the batch is uploaded
    with pytest.raises(UisValidationError) as caught:
        client.upload_deals_history(rows)

    # Then the error names the field with dots and no row index (data_api/index.html), and nothing was stored
    error = caught.value
    assert (error.mnemonic, error.field, error.value) == (
        "invalid_parameter_value",
        "deals.modified_stage_date_time",
        "2025-02-01 10:00:00",
    )
    assert error.params is None
    assert sandbox.state()["deals"] == []


def test_stage_time_going_backwards_across_calls_is_refused(client, sandbox, funnel):
    # Given a deal whose last uploaded stage moved on 2025-03-05
    client.upload_deals_history([deal_row("d1", "first_sale:s1", "2025-03-05 10:00:00")])

    # When a later call sends an older transition
    with pytest.raises(UisValidationError) as caught:
        client.upload_deals_history(
            [
                deal_row("d2", "first_sale:s0", "2025-03-06 10:00:00"),
                deal_row("d1", "first_sale:s2", "2025-03-04 10:00:00"),
            ]
        )

    # Then it is refused naming the field, and the good row of the same call is not stored either
    assert caught.value.field == "deals.modified_stage_date_time"
    assert [d["ext_id"] for d in sandbox.state()["deals"]] == ["d1"]


def test_resending_the_current_stage_updates_the_deal_without_a_new_step(client, sandbox, funnel):
    client.upload_deals_history([deal_row("d1", "first_sale:s1", "2025-03-05 10:00:00", revenue=100)])

    client.upload_deals_history(
        [
            deal_row(
                "d1",
                "first_sale:s1",
                "2025-03-05 10:00:00",
                revenue=250,
                user_fields=[{"ext_id": "hours", "value": 8}],
            )
        ]
    )

    [deal] = sandbox.state()["deals"]
    assert deal["revenue"] == 250 and deal["user_fields"] == {"hours": 8}
    assert [(s["stage_ext_id"], s["is_generated"]) for s in deal["path"]] == [
        ("first_sale:s0", True),
        ("first_sale:s1", False),
    ]


def test_a_failed_deal_can_come_back_in_process(client, sandbox, funnel):
    client.upload_deals_history(
        [
            deal_row("d1", "first_sale:s0", "2025-03-01 10:00:00"),
            deal_row("d1", "first_sale:lost", "2025-03-02 10:00:00", closed_date_time="2025-03-02 10:00:00"),
        ]
    )
    client.upload_deals_history([deal_row("d1", "first_sale:s1", "2025-03-03 10:00:00")])

    [deal] = sandbox.state()["deals"]
    assert [s["stage_ext_id"] for s in deal["path"]] == ["first_sale:s0", "first_sale:lost", "first_sale:s1"]
    assert deal["closed_date_time"] is None


@pytest.mark.parametrize(
    ("extra", "mnemonic", "field"),
    [
        ({"created": "2025-03-10 12:05:00"}, "invalid_parameter_value", "deals.created_date_time"),
        ({"closed_date_time": "2025-03-05 10:00:00"}, "invalid_parameter_value", "deals.closed_date_time"),
        ({"contact_ext_ids": ["c1"]}, "required_parameter_missed", "deals.main_contact_ext_id"),
        ({"main_contact_ext_id": "c1"}, "required_parameter_missed", "deals.contact_ext_ids"),
        (
            {"contact_ext_ids": ["c1"], "main_contact_ext_id": "c2"},
            "invalid_parameter_value",
            "deals.main_contact_ext_id",
        ),
        (
            {"contact_ext_ids": ["c1", "c9"], "main_contact_ext_id": "c1"},
            "entity_not_found",
            "deals.contact_ext_ids",
        ),
        ({"communication_id": 90000001}, "required_parameter_missed", "deals.communication_type"),
        ({"communication_type": "chat"}, "required_parameter_missed", "deals.communication_id"),
        (
            {"communication_id": 90000001, "communication_type": "sms"},
            "invalid_parameter_value",
            "deals.communication_type",
        ),
        (
            {"user_fields": [{"ext_id": "branch", "value": "Центр"}]},
            "entity_not_found",
            "deals.user_fields.ext_id",
        ),
        (
            {"user_fields": [{"ext_id": "hours", "value": "много"}]},
            "invalid_parameter_value",
            "deals.user_fields.value",
        ),
        ({"sales_funnel_ext_id": "upsell"}, "entity_not_found", "deals.sales_funnel_ext_id"),
        ({"stage_ext_id": "upsell:paid"}, "entity_not_found", "deals.stage_ext_id"),
        ({"name": None}, "required_parameter_missed", "deals.name"),
        ({"modified_stage_date_time": "05.03.2025 10:00"}, "invalid_date_time", "deals.modified_stage_date_time"),
    ],
    ids=[
        "created-in-future",
        "closed-on-in-process",
        "contacts-without-main",
        "main-without-contacts",
        "main-not-in-list",
        "unknown-contact",
        "communication-without-type",
        "type-without-communication",
        "unknown-communication-type",
        "unknown-user-field",
        "non-numeric-numeric-field",
        "unknown-funnel",
        "stage-of-another-funnel",
        "missing-name",
        "bad-date-format",
    ],
)
def test_each_row_rule_is_enforced(client, sandbox, funnel, extra, mnemonic, field):
    # sandbox clock is 2025-03-10 12:00:30: 12:05 is in the future
    created = extra.pop("created", "2025-03-01 10:00:00")
    row = deal_row("d1", "first_sale:s1", "2025-03-05 10:00:00", created=created)
    row.update(extra)

    with pytest.raises(UisValidationError) as caught:
        client.upload_deals_history([row])

    assert (caught.value.mnemonic, caught.value.field) == (mnemonic, field)
    assert sandbox.state()["deals"] == []


def test_more_than_1000_rows_are_refused_by_uis(client, sandbox, funnel):
    rows = [deal_row(f"d{i}", "first_sale:s0", "2025-03-01 10:00:00") for i in range(1001)]

    error = _refused(client, "upload.deals_history", {"deals": rows})

    assert (error.mnemonic, error.field, error.value) == ("data_limit_exceeded", "deals", 1001)
    assert sandbox.state()["deals"] == []


def test_deleted_deal_is_gone_and_the_funnel_can_then_be_deleted(client, sandbox, funnel):
    client.upload_deals_history([deal_row("d1", "first_sale:s0", "2025-03-01 10:00:00")])
    with pytest.raises(UisValidationError):
        client.call("delete.sales_funnel", {"ext_id": funnel})

    client.call("delete.deals", {"ext_id": "d1"})
    client.call("delete.sales_funnel", {"ext_id": funnel})

    assert sandbox.state()["deals"] == [] and sandbox.state()["funnels"] == []
    assert client.call("get.deals_in_processing", {})["data"]["count"] == 0


def test_a_row_naming_an_employee_uis_lacks_is_refused_and_a_created_one_is_taken(client, sandbox, funnel):
    row = deal_row("d1", "first_sale:s0", "2025-03-01 10:00:00", employee_ext_id="user-2", source="Сайт")
    assert _refused(client, "upload.deals_history", {"deals": [row]}).field == "deals.employee_ext_id"

    client.create_deal_employee("user-2", "Ольга Менеджер")
    client.upload_deals_history([row])
    assert sandbox.state()["deals"][0]["employee_ext_id"] == "user-2"
    assert client.deals_history_of(["d1"])[0]["source"] == "Сайт"


def test_an_undocumented_row_key_is_refused(client, funnel):
    row = deal_row("d1", "first_sale:s0", "2025-03-01 10:00:00", manager="Ольга")
    error = _refused(client, "upload.deals_history", {"deals": [row]})
    assert (error.mnemonic, error.field) == ("unexpected_parameters", "deals.manager")


def test_an_upload_applied_whose_answer_is_lost_is_stored_and_charged(client, sandbox, funnel):
    sandbox.fail("applied", method="upload.deals_history", http_status=504)
    with pytest.raises(Exception) as caught:
        client.upload_deals_history([deal_row("d1", "first_sale:s0", "2025-03-01 10:00:00")])
    assert getattr(caught.value, "ambiguous", False)
    # the client did not send it again (a second copy would be refused as older than the deal's last stage)
    assert [c["method"] for c in sandbox.rpc_log].count("upload.deals_history") == 1
    assert [(r["ext_id"], r["stage_ext_id"]) for r in client.deals_history_of(["d1", "d2"])] == [
        ("d1", "first_sale:s0")
    ]


def test_deal_methods_need_the_sales_funnel_component(client, sandbox):
    # data_api/components/: every deal method needs «Воронки продаж» (sales_funnel); refused calls cost nothing
    sandbox.set_components(disabled=["sales_funnel"])
    with pytest.raises(UisComponentMissing) as caught:
        client.call("create.sales_funnel", funnel_params())
    assert caught.value.rpc_code == -32008 and caught.value.components == ["sales_funnel"]
    assert caught.value.mnemonic == "method_component_disabled"
    assert client.missing_components(["deals", "chats"]).keys() == {"deals"}
    assert sandbox.points_spent == 1  # the chats probe only
