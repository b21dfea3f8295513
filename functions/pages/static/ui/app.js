// The settings page: sign-in, the operator's school picker, the three sections of the integration.
// Plain ES module, no build step. Form fields carry `data-path` (their place in the settings document)
// and `data-kind` (how the value is read); the document from the API is kept whole, so fields this page
// does not know survive a save.
import { api, apiBase, ApiError, optional, setToken, token, tokenIntegration } from "./api.js";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

const TITLE_PARAMS = [
  ["visitor_name", "Имя посетителя"],
  ["visitor_phone", "Телефон посетителя"],
  ["visitor_email", "E-mail посетителя"],
  ["site", "Сайт"],
  ["channel", "Канал"],
  ["chat_id", "Номер чата"],
  ["communication_id", "Номер обращения"],
  ["started_at", "Начало чата"],
  ["operator", "Оператор"],
  ["tags", "Теги"],
];
// UIS notification/report parameters an extra field can take its value from (contract.md).
const UIS_SOURCES = [
  "utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term", "campaign_name", "search_query",
  "search_engine", "site_domain_name", "visitor_email", "visitor_name", "visitor_phone_number", "ua_client_id",
];
const NOTIFICATIONS = [
  ["offline_message", "Офлайн заявка", "Тело по умолчанию"],
  ["chat_finished", "Завершение чата", "Тело по умолчанию"],
  ["lost_chat", "Потерянный чат", "Тело по умолчанию"],
  ["set_mark", "Установка метки (лид по тегу)", 'Тело по умолчанию и поля:\n"communication_id": {{communication_id}},\n"communication_type": "{{communication_type}}",\n"chat_id": {{chat_id}}'],
  ["unset_mark", "Снятие метки (лид по тегу)", 'Тело по умолчанию и поля:\n"communication_id": {{communication_id}},\n"communication_type": "{{communication_type}}",\n"chat_id": {{chat_id}}'],
];
const FUNNELS = { first_sale: "Первая продажа", upsell: "Допродажи" };
const UPLOAD = { uploaded: "выгружена", pending: "ждёт выгрузки", parked: "отложена" };
const KINDS = { deal: "сделка", deal_event: "webhook AlfaCRM", text_event: "уведомление UIS" };

const state = { id: null, integration: null, doc: null, webhooks: null, operator: false, lookups: {}, caret: null };

// ------------------------------------------------------------------------------------------ helpers
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  return node;
}

function splitPath(path) {
  return path.replace(/\[(\d+)\]/g, ".$1").split(".");
}

function getPath(obj, path) {
  return splitPath(path).reduce((o, k) => (o == null ? undefined : o[k]), obj);
}

function hasPath(obj, path) {
  const keys = splitPath(path);
  const parent = keys.slice(0, -1).reduce((o, k) => (o == null ? undefined : o[k]), obj);
  return parent != null && typeof parent === "object" && keys[keys.length - 1] in parent;
}

function setPath(obj, path, value) {
  const keys = splitPath(path);
  let o = obj;
  for (const k of keys.slice(0, -1)) {
    if (o[k] == null || typeof o[k] !== "object") o[k] = {};
    o = o[k];
  }
  o[keys[keys.length - 1]] = value;
}

function say(node, text, kind = "") {
  node.textContent = text;
  node.classList.remove("ok", "bad");
  if (kind) node.classList.add(kind);
}

function describe(err) {
  if (err instanceof ApiError) {
    if (err.status === 401) return "Доступ запрещён: токен неверен или ссылка устарела.";
    if (err.status === 403) return "Нет доступа: эта ссылка открывает только свою интеграцию.";
    if (err.status === 503 || err.status === 502) return "Сервис AlfaCRM или UIS сейчас недоступен: " + err.message;
    return err.message;
  }
  return String(err && err.message ? err.message : err);
}

async function copy(inputId, button) {
  const input = document.getElementById(inputId);
  input.select();
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    document.execCommand("copy");
  }
  const label = button.textContent;
  button.textContent = "Скопировано";
  setTimeout(() => (button.textContent = label), 1500);
}

// ------------------------------------------------------------------------------------------ sign-in
function readFragment() {
  const params = new URLSearchParams(window.location.hash.slice(1));
  if (params.get("token")) {
    setToken(params.get("token"));
    // the token leaves the address bar (and the history) at once
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
  }
}

function showSignIn(message = "") {
  $("#sign-in").hidden = false;
  $("#operator").hidden = true;
  $("#workspace").hidden = true;
  $("#sign-out").hidden = true;
  $("#sign-in-error").textContent = message;
}

function tokenFrom(text) {
  const value = text.trim();
  const at = value.indexOf("#");
  if (at >= 0) return new URLSearchParams(value.slice(at + 1)).get("token") || "";
  return value;
}

async function start() {
  $("#sign-in").hidden = true;
  $("#sign-out").hidden = false;
  const school = tokenIntegration(token());
  try {
    if (school) {
      state.operator = false;
      await openIntegration(school);
    } else {
      state.operator = true;
      await loadSchools();
    }
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
      setToken("");
      showSignIn(describe(err));
      return;
    }
    throw err;
  }
}

// ------------------------------------------------------------------------------------------ operator
async function loadSchools(selectId) {
  const { items } = await api("GET", "/integrations");
  $("#operator").hidden = false;
  const select = $("#integration-select");
  select.replaceChildren(...items.map((i) => el("option", { value: i.id }, `${i.name} (${i.id})${i.active ? "" : " — не активна"}`)));
  if (!items.length) {
    select.append(el("option", { value: "" }, "— школ пока нет: подключите первую ниже —"));
    $("#new-school").open = true;
    $("#workspace").hidden = true;
    return;
  }
  select.value = selectId || state.id || items[0].id;
  await openIntegration(select.value);
}

async function issueAccess() {
  $("#access-result").hidden = true;
  try {
    const reply = await api("POST", `/integrations/${state.id}/access`);
    $("#access-url").value = reply.url;
    $("#access-result").hidden = false;
  } catch (err) {
    $("#global-error").textContent = describe(err);
  }
}

async function createSchool(event) {
  event.preventDefault();
  const status = $("#create-status");
  const body = {};
  for (const input of $$("[data-create]")) {
    const value = input.type === "number" ? parseInt(input.value || "1", 10) : input.value.trim();
    setPath(body, input.dataset.create, value);
  }
  say(status, "Проверяем вход в AlfaCRM и UIS…");
  try {
    const created = await api("POST", "/integrations", body);
    say(status, "Школа подключена.", "ok");
    $("#new-school").open = false;
    await loadSchools(created.id);
  } catch (err) {
    say(status, describe(err), "bad");
  }
}

// ------------------------------------------------------------------------------------------ one integration
async function openIntegration(id) {
  state.id = id;
  state.lookups = {};
  $$("select[data-loaded]").forEach((select) => delete select.dataset.loaded);
  clearErrors();
  const [integration, webhooks] = await Promise.all([
    api("GET", `/integrations/${id}`),
    api("GET", `/integrations/${id}/webhooks`),
  ]);
  state.integration = integration;
  state.doc = structuredClone(integration.settings || {});
  state.webhooks = webhooks;
  $("#school-name").textContent = integration.name;
  $("#workspace").hidden = false;
  $("#access-result").hidden = true;
  $("#rotate-result").hidden = true;
  renderIntegration();
  renderFunnelSync();
  applyDoc();
  loadLookups();
  if (!$("#tab-raw").hidden) loadRaw();
}

function renderIntegration() {
  const i = state.integration;
  $("#active-switch").checked = !!i.active;
  say($("#active-status"), i.active ? "Интеграция работает" : "Интеграция выключена");
  $("#alfacrm-webhook").value = state.webhooks.alfacrm;
  $("#uis-webhook").value = state.webhooks.uis;
  $("#cred-name").value = i.name;
  $("#cred-name").readOnly = true;
  $("#cred-hostname").value = i.alfacrm.hostname;
  $("#cred-email").value = i.alfacrm.email;
  $("#cred-api-key").value = "";
  $("#cred-uis-token").value = "";
  $("#texts-hostname").value = i.alfacrm.hostname;
  $("#texts-uis-url").value = i.uis.api_url;
  $("#widget-snippet").value = `<script src="${apiBase}/widget/alfacrm.js?integration=${i.id}" async></script>`;
  const rows = NOTIFICATIONS.map(([event, label, body]) => {
    const inputId = `notify-${event}`;
    return el(
      "tr",
      {},
      el("td", {}, label),
      el("td", {}, "POST"),
      el("td", {}, el("input", { id: inputId, readonly: true, value: `${state.webhooks.uis}?event=${event}` })),
      el("td", {}, el("pre", { class: "body" }, body)),
      el("td", {}, el("button", { type: "button", "data-copy": inputId }, "Копировать")),
    );
  });
  $("#notifications tbody").replaceChildren(...rows);
}

// ------------------------------------------------------------------------------------------ look-ups
const LOOKUPS = {
  "lead-statuses": ["alfacrm", (x) => [String(x.id), x.name]],
  "lead-sources": ["alfacrm", (x) => [String(x.id), x.name]],
  branches: ["alfacrm", (x) => [String(x.id), x.name]],
  users: ["alfacrm", (x) => [String(x.id), x.name]],
  "pay-items": ["alfacrm", (x) => [String(x.id), x.name]],
  "customer-fields": ["alfacrm", (x) => [String(x), String(x)]],
  sites: ["uis", (x) => [x.domain_name || String(x.id), x.name ? `${x.domain_name} — ${x.name}` : x.domain_name]],
  "chat-channels": ["uis", (x) => [String(x.id), `${x.name} (${x.type})`]],
  tags: ["uis", (x) => [String(x.id), x.name]],
};

function loadLookups() {
  const id = state.id;
  for (const [name, [side, option]] of Object.entries(LOOKUPS)) {
    optional("GET", `/integrations/${id}/${side}/${name}`)
      .then((reply) => {
        if (state.id !== id) return;
        state.lookups[name] = reply === null ? null : reply.items.map(option);
        fillLookup(name);
      })
      .catch((err) => {
        if (state.id !== id) return;
        state.lookups[name] = { error: describe(err) };
        fillLookup(name);
      });
  }
}

function fillLookup(name) {
  const items = state.lookups[name];
  for (const select of $$(`select[data-lookup="${name}"]`)) {
    const field = select.closest(".field");
    field.querySelector(".lookup-note")?.remove();
    if (items === null || (items && items.error)) {
      const text = items === null ? "недоступно в этой версии API" : `не удалось загрузить: ${items.error}`;
      field.append(el("p", { class: "lookup-note unavailable" }, text));
      if (items === null && select.dataset.optional) {
        select.disabled = true;
        select.hidden = true;
        continue;
      }
    }
    select.disabled = false;
    select.hidden = false;
    // what the person already picked wins over the stored document (the look-up may arrive late)
    setOptions(select, lookupItems(select), select.options.length ? selectedValues(select) : storedValues(select));
    select.dataset.loaded = "true";
  }
  if (name === "customer-fields") $$(".extra").forEach((box) => renderExtra(box, readExtra(box)));
}

function lookupItems(select) {
  const items = state.lookups[select.dataset.lookup];
  return Array.isArray(items) ? items : [];
}

function storedValues(select) {
  const stored = getPath(state.doc, select.dataset.path);
  if (Array.isArray(stored)) return stored.map(String);
  return stored == null ? [""] : [String(stored)];
}

function selectedValues(select) {
  return $$("option", select).filter((o) => o.selected).map((o) => o.value);
}

/** Options from a look-up, with `chosen` selected; a chosen value the look-up does not list (a name
 * instead of an id, a deleted status) stays as an option of its own, so a save never drops it. */
function setOptions(select, items, chosen) {
  const wanted = new Set(chosen);
  const options = [];
  if (!select.multiple) options.push(el("option", { value: "" }, select.dataset.empty || "—"));
  const known = new Set(items.map(([value]) => value));
  for (const [value, label] of items) options.push(el("option", { value }, label));
  for (const value of wanted) {
    if (value !== "" && !known.has(value)) options.push(el("option", { value }, `${value} (нет в списке)`));
  }
  select.replaceChildren(...options);
  for (const option of select.options) option.selected = wanted.has(option.value);
}

// ------------------------------------------------------------------------------------------ document ⇄ form
function boundFields() {
  return $$("#workspace [data-path]").filter((node) => !node.closest(".extra") || node.classList.contains("extra"));
}

function applyDoc() {
  for (const node of boundFields()) {
    const path = node.dataset.path;
    const field = node.closest(".field");
    // a field of a newer API is shown only when the stored document has it (look-ups say so themselves)
    if (node.dataset.optional && field && node.dataset.lookup === undefined) field.hidden = !hasPath(state.doc, path);
    const value = getPath(state.doc, path);
    const kind = node.dataset.kind;
    if (kind === "bool") node.checked = !!value;
    else if (kind === "extra") renderExtra(node, Array.isArray(value) ? value : []);
    else if (node.tagName === "SELECT" && node.dataset.lookup) setOptions(node, lookupItems(node), storedValues(node));
    else if (kind === "csv") node.value = (value || []).join(", ");
    else node.value = value == null ? "" : String(value);
  }
  updateReveals();
}

function readValue(node) {
  const kind = node.dataset.kind;
  if (kind === "bool") return node.checked;
  if (kind === "extra") return readExtra(node);
  if (kind === "ints") return $$("option", node).filter((o) => o.selected).map((o) => parseInt(o.value, 10)).filter(Number.isFinite);
  if (kind === "strs") return $$("option", node).filter((o) => o.selected).map((o) => o.value);
  if (kind === "csv") return node.value.split(",").map((s) => s.trim()).filter(Boolean);
  if (kind === "int") {
    if (node.value.trim() === "") return null;
    const number = Number(node.value);
    return Number.isInteger(number) ? number : node.value;
  }
  if (node.dataset.nullable && node.value.trim() === "") return null;
  return node.value;
}

function collect() {
  const doc = structuredClone(state.doc);
  for (const node of boundFields()) {
    const path = node.dataset.path;
    // a field of a newer API (e.g. pay_item_ids) is sent only when the stored document has it
    if (node.dataset.optional && !hasPath(state.doc, path)) continue;
    if (node.disabled) continue;
    setPath(doc, path, readValue(node));
  }
  return doc;
}

function updateReveals() {
  for (const box of $$("[data-reveals]")) document.getElementById(box.dataset.reveals).hidden = !box.checked;
  $("#lead-tags-field").hidden = $("#lead-on-event").value !== "tag_set";
}

// extra fields: rows of (UIS parameter → AlfaCRM field, «Обновлять всегда»)
function renderExtra(box, rows) {
  const path = box.dataset.path;
  const fields = Array.isArray(state.lookups["customer-fields"]) ? state.lookups["customer-fields"].map(([v]) => v) : [];
  const listId = `${path}-sources`;
  const body = rows.map((row, i) => {
    const targets = fields.includes(row.target) || !row.target ? fields : [row.target, ...fields];
    return el(
      "tr",
      {},
      el("td", {}, el("input", { list: listId, "aria-label": "Поле UIS", "data-path": `${path}[${i}].source`, "data-col": "source", value: row.source || "", placeholder: "utm_source" })),
      el("td", {}, "→"),
      el(
        "td",
        {},
        fields.length || row.target
          ? el("select", { "aria-label": "Поле AlfaCRM", "data-path": `${path}[${i}].target`, "data-col": "target" },
              el("option", { value: "" }, "— поле AlfaCRM —"),
              targets.map((f) => el("option", { value: f, selected: f === row.target }, f)))
          : el("input", { "aria-label": "Поле AlfaCRM", "data-path": `${path}[${i}].target`, "data-col": "target", value: row.target || "", placeholder: "custom_utm_source" }),
      ),
      el("td", {}, el("label", { class: "check" }, el("input", { type: "checkbox", "data-col": "update_always", checked: !!row.update_always }), "Обновлять всегда")),
      el("td", {}, el("button", { type: "button", class: "secondary", onclick: () => renderExtra(box, readExtra(box).filter((_, j) => j !== i)) }, "Удалить")),
    );
  });
  box.replaceChildren(
    el("datalist", { id: listId }, UIS_SOURCES.map((s) => el("option", { value: s }))),
    el("table", {}, el("tbody", {}, body)),
    el("button", { type: "button", class: "secondary", onclick: () => renderExtra(box, [...readExtra(box), { source: "", target: "", update_always: false }]) }, "Добавить поле"),
  );
}

function readExtra(box) {
  return $$("tbody tr", box).map((tr) => ({
    source: $('[data-col="source"]', tr).value.trim(),
    target: $('[data-col="target"]', tr).value.trim(),
    update_always: $('[data-col="update_always"]', tr).checked,
  }));
}

// ------------------------------------------------------------------------------------------ errors next to fields
function clearErrors() {
  $$(".field-error").forEach((n) => n.remove());
  $$(".invalid").forEach((n) => n.classList.remove("invalid"));
}

function fieldFor(path) {
  // the named field, else the first field inside the named part (a rule about two fields names their parent)
  let candidate = path;
  while (candidate) {
    const exact = $(`#workspace [data-path="${CSS.escape(candidate)}"]`);
    if (exact) return exact;
    const inside = $(`#workspace [data-path^="${CSS.escape(candidate)}."], #workspace [data-path^="${CSS.escape(candidate)}["]`);
    if (inside) return inside;
    const cut = Math.max(candidate.lastIndexOf("."), candidate.lastIndexOf("["));
    candidate = cut > 0 ? candidate.slice(0, cut) : "";
  }
  return null;
}

/** `texts.chats.create_lead` + "tags: list the tags…" names `texts.chats.create_lead.tags`. */
function errorField(err) {
  const rest = err.message.replace(/^[\w.[\]]+: /, "");
  const sub = /^(\w+): /.exec(rest);
  if (err.field && sub && $(`#workspace [data-path="${CSS.escape(`${err.field}.${sub[1]}`)}"]`)) return `${err.field}.${sub[1]}`;
  return err.field;
}

function translate(message) {
  let m = /^unknown parameter \{(\w+)\}; known: (.*)$/.exec(message);
  if (m) return `Неизвестный параметр {${m[1]}}. Доступные параметры: ${m[2]}`;
  m = /^malformed template: (.*)$/.exec(message);
  if (m) return `Шаблон записан с ошибкой: ${m[1]}`;
  if (/^the task title template is empty$/.test(message)) return "Название задачи не может быть пустым";
  return message;
}

function showFieldError(err) {
  const field = errorField(err);
  const node = field ? fieldFor(field) : null;
  if (!node) return false;
  const message = translate(err.message.replace(/^[\w.[\]]+: /, "").replace(/^\w+: /, ""));
  const anchor = node.closest(".row") || node;
  anchor.after(el("p", { class: "field-error", role: "alert", "data-error-for": field }, message));
  node.classList.add("invalid");
  const panel = node.closest(".tab");
  if (panel && panel.hidden) selectTab(panel.id.replace("tab-", ""));
  node.scrollIntoView({ block: "center" });
  node.focus();
  return true;
}

// ------------------------------------------------------------------------------------------ saving
async function save(button) {
  const status = button.parentElement.querySelector(".save-status");
  clearErrors();
  const doc = collect();
  button.disabled = true;
  say(status, "Сохраняем…");
  try {
    const saved = await api("PUT", `/integrations/${state.id}/settings`, doc);
    state.doc = saved;
    applyDoc();
    $$(".save-status").forEach((s) => say(s, ""));
    // saved either way; a funnel sync UIS did not take is shown pending (it is retried by the connector)
    state.integration = await api("GET", `/integrations/${state.id}`);
    renderFunnelSync();
    say(status, state.integration.funnel_sync ? "Сохранено; синхронизация воронок с UIS ожидает повтора" : "Сохранено", "ok");
  } catch (err) {
    // the form keeps everything typed: only the message changes
    const placed = err instanceof ApiError && err.status === 422 && showFieldError(err);
    say(status, placed ? "Не сохранено: исправьте отмеченное поле" : `Не сохранено: ${describe(err)}`, "bad");
  } finally {
    button.disabled = false;
  }
}

async function toggleActive(event) {
  const wanted = event.target.checked;
  const status = $("#active-status");
  say(status, wanted ? "Включаем (создаём воронки в UIS)…" : "Выключаем…");
  try {
    const reply = await api("POST", `/integrations/${state.id}/${wanted ? "activate" : "deactivate"}`);
    state.integration.active = reply.active;
    say(status, reply.active ? "Интеграция работает" : "Интеграция выключена", "ok");
  } catch (err) {
    event.target.checked = !wanted;
    say(status, describe(err), "bad");
  }
}

async function checkSide(side, statusNode) {
  say(statusNode, "Проверяем…");
  try {
    const path = side === "alfacrm" ? "alfacrm/branches" : "uis/sites";
    const reply = await api("GET", `/integrations/${state.id}/${path}`);
    const what = side === "alfacrm" ? `филиалов: ${reply.items.length}` : `сайтов: ${reply.items.length}`;
    say(statusNode, `✓ Подключение работает (${what})`, "ok");
  } catch (err) {
    say(statusNode, describe(err), "bad");
  }
}

async function saveCredentials() {
  const status = $("#alfacrm-check");
  const body = {};
  const key = $("#cred-api-key").value.trim();
  const uisToken = $("#cred-uis-token").value.trim();
  if (key) {
    const i = state.integration;
    body.alfacrm = { hostname: $("#cred-hostname").value.trim(), email: $("#cred-email").value.trim(), api_key: key, branch_id: i.alfacrm.branch_id };
  }
  if (uisToken) body.uis = { api_url: state.integration.uis.api_url, access_token: uisToken };
  if (!key && !uisToken) {
    say(status, "Введите новый api_key AlfaCRM (он проверяется вместе с hostname и email) или ключ API UIS.", "bad");
    return;
  }
  say(status, "Проверяем вход…");
  try {
    const reply = await optional("PUT", `/integrations/${state.id}/credentials`, body);
    if (reply === null) say(status, "Смена учётных данных недоступна в этой версии API: обратитесь к оператору.", "bad");
    else {
      state.integration = reply;
      say(status, "✓ Учётные данные проверены и сохранены", "ok");
      $("#cred-api-key").value = "";
      $("#cred-uis-token").value = "";
    }
  } catch (err) {
    say(status, describe(err), "bad");
  }
}

// ------------------------------------------------------------------------------------------ «+» parameters
function setupParamMenu() {
  const menu = $("#param-menu");
  const plus = $("#param-plus");
  const title = $("#lost-title");
  title.addEventListener("blur", () => (state.caret = [title.selectionStart, title.selectionEnd]));
  menu.replaceChildren(
    ...TITLE_PARAMS.map(([name, label]) =>
      el("button", { type: "button", role: "menuitem", "data-param": name, onclick: () => insertParam(name) }, label, el("code", {}, `{${name}}`)),
    ),
  );
  const close = () => {
    menu.hidden = true;
    plus.setAttribute("aria-expanded", "false");
  };
  plus.addEventListener("click", () => {
    menu.hidden = !menu.hidden;
    plus.setAttribute("aria-expanded", String(!menu.hidden));
    if (!menu.hidden) menu.querySelector("button").focus();
  });
  document.addEventListener("click", (e) => {
    if (!menu.hidden && !e.target.closest(".menu-wrap")) close();
  });
  menu.addEventListener("keydown", (e) => e.key === "Escape" && (close(), plus.focus()));
  function insertParam(name) {
    const text = `{${name}}`;
    const [start, end] = state.caret || [title.value.length, title.value.length];
    title.value = title.value.slice(0, start) + text + title.value.slice(end);
    const at = start + text.length;
    title.focus();
    title.setSelectionRange(at, at);
    state.caret = [at, at];
    close();
  }
}

// ------------------------------------------------------------------------------------------ raw data
// Stage ext ids as the connector names them in UIS (connector/deals/rules.py): lead status ids plus fixed ones.
const STAGES = {
  first_sale: { no_status: "Без статуса", success: "Успешная продажа", failed: "Отказ" },
  upsell: { new: "Новая оплата", paid: "Оплачено", cancelled: "Отменено" },
};

function stageName(stage, funnel) {
  const fixed = (STAGES[funnel] || {})[stage];
  if (fixed) return fixed;
  const statuses = state.lookups["lead-statuses"];
  const hit = Array.isArray(statuses) && funnel === "first_sale" ? statuses.find(([id]) => id === String(stage)) : null;
  return hit ? hit[1] : stage ?? "—";
}

async function loadRaw() {
  const id = state.id;
  const funnel = $("#deals-funnel").value;
  const [health, deals, parked, events] = await Promise.allSettled([
    optional("GET", `/integrations/${id}/health`),
    api("GET", `/integrations/${id}/deals${funnel ? `?funnel=${funnel}` : ""}`),
    api("GET", `/integrations/${id}/parked`),
    optional("GET", `/integrations/${id}/events?limit=50`),
  ]);
  if (state.id !== id) return;
  renderHealth(health);
  renderDeals(deals);
  renderParked(parked);
  renderEvents(events);
}

const HEALTH_STATUS = { ok: "в порядке", attention: "требует внимания", failing: "ошибка доступа" };
const CREDENTIALS = { alfacrm: "Вход в AlfaCRM", uis: "Вход в UIS", uis_components: "Компоненты UIS" };
const CREDENTIAL_STATE = { ok: "✓ работает", failing: "✗ не работает", unknown: "ещё не проверялся" };
const SOURCES = { alfacrm: "AlfaCRM", uis: "UIS", poller: "опрос UIS", uploader: "выгрузка", reconciler: "сверка" };
const EVENT_KINDS = { deal_event: "webhook", text_event: "уведомление", upload: "выгрузка", deal: "сделка", poll: "опрос чатов", lost_chat: "потерянный чат" };
const OUTCOMES = { done: "выполнено", skipped: "пропущено", parked: "отложено", failed: "ошибка" };

function when(iso) {
  return iso ? new Date(iso).toLocaleString("ru-RU") : "—";
}

function renderHealth(result) {
  const box = $("#health");
  if (result.status === "rejected") return box.replaceChildren(el("span", { class: "error" }, describe(result.reason)));
  if (result.value === null) return box.replaceChildren(el("span", { class: "unavailable" }, "Состояние: недоступно в этой версии API"));
  const h = result.value;
  const line = (label, ...value) => el("div", {}, el("b", {}, `${label}: `), ...value);
  const rows = [
    line("Состояние", el("span", { class: `health-${h.status}`, "data-health": h.status }, HEALTH_STATUS[h.status] || h.status)),
    line("Последний webhook AlfaCRM", when(h.last_alfacrm_webhook_at)),
    line("Последнее уведомление UIS", when(h.last_uis_notification_at)),
    line("Последняя выгрузка в UIS", when(h.last_upload_at)),
    line("Ждут выгрузки", String(h.pending_deals)),
    line("Отложено", String(h.parked)),
    line("В очереди ошибок (DLQ)", String(h.dead_letters)),
  ];
  for (const [key, label] of Object.entries(CREDENTIALS)) {
    const c = (h.credentials || {})[key] || { state: "unknown" };
    rows.push(line(label, el("span", { "data-credential": key, class: `credential-${c.state}` }, CREDENTIAL_STATE[c.state] || c.state), c.error ? ` — ${c.error}` : "", c.at ? ` (${when(c.at)})` : ""));
  }
  if (h.last_error) rows.push(line("Последняя ошибка", `${when(h.last_error.at)} — ${h.last_error.key}: ${h.last_error.reason}`));
  if (h.funnel_sync) rows.push(line("Синхронизация воронок", `ожидает повтора (попыток: ${h.funnel_sync.attempts}): ${h.funnel_sync.error}`));
  if (h.redrive) rows.push(line("Повтор из очереди ошибок", h.redrive.state === "running" ? `идёт в фоне, возвращено: ${h.redrive.moved}` : `завершён, возвращено: ${h.redrive.moved}`));
  box.replaceChildren(...rows);
}

async function checkHealth() {
  const status = $("#check-health-status");
  say(status, "Проверяем вход в AlfaCRM и UIS…");
  try {
    const health = await api("GET", `/integrations/${state.id}/health?check=true`);
    renderHealth({ status: "fulfilled", value: health });
    say(status, health.status === "failing" ? "Есть ошибки доступа: см. выше" : "Проверено", health.status === "failing" ? "bad" : "ok");
  } catch (err) {
    say(status, describe(err), "bad");
  }
}

function renderDeals(result) {
  const body = $("#deals tbody");
  if (result.status === "rejected") {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "error" }, describe(result.reason))));
    return;
  }
  const items = result.value.items;
  say($("#deals-count"), `сделок: ${items.length}`);
  const rows = [];
  for (const deal of items) {
    const history = el(
      "tr",
      { class: "history", hidden: true },
      el("td", { colspan: 6 }, "История: ", deal.history.map((h) => `${stageName(h.stage, deal.funnel)} (${h.at})`).join(" → ") || "—"),
    );
    const upload = deal.upload || {};
    rows.push(
      el(
        "tr",
        { class: "clickable", "data-deal": deal.ext_id, onclick: () => (history.hidden = !history.hidden) },
        el("td", {}, deal.ext_id),
        el("td", {}, FUNNELS[deal.funnel] || deal.funnel),
        el("td", {}, stageName(deal.stage, deal.funnel)),
        el("td", {}, deal.revenue == null ? "" : String(deal.revenue)),
        el("td", {}, deal.contact_ext_id || "—"),
        el("td", { class: `state-${upload.state}` }, UPLOAD[upload.state] || upload.state || "—", upload.error ? `: ${upload.error}` : ""),
      ),
      history,
    );
  }
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 6, class: "hint" }, "Сделок пока нет. Создайте тестовый лид в AlfaCRM.")));
  body.replaceChildren(...rows);
}

function renderParked(result) {
  const body = $("#parked tbody");
  if (result.status === "rejected") {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 5, class: "error" }, describe(result.reason))));
    return;
  }
  const items = result.value.items;
  $("#replay").disabled = false;
  const rows = items.map((p) =>
    el(
      "tr",
      { "data-parked": p.key },
      el("td", {}, KINDS[p.kind] || p.kind),
      el("td", {}, el("code", {}, p.key)),
      el("td", {}, p.error || "", p.code ? ` (${p.code})` : ""),
      el("td", {}, p.parked_at ? new Date(p.parked_at * 1000).toLocaleString("ru-RU") : ""),
      el("td", {}, el("button", { type: "button", class: "secondary", "data-replay-key": `${p.kind}#${p.key}`, onclick: () => replay([`${p.kind}#${p.key}`]) }, "Повторить")),
    ),
  );
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: 5, class: "hint" }, "Отложенных нет.")));
  body.replaceChildren(...rows);
}

function renderEvents(result) {
  const note = $("#events-note");
  const table = $("#events");
  if (result.status === "rejected") {
    note.replaceChildren(el("span", { class: "error" }, describe(result.reason)));
    table.hidden = true;
    return;
  }
  if (result.value === null) {
    note.replaceChildren(el("span", { class: "unavailable" }, "Журнал событий: недоступно в этой версии API"));
    note.hidden = false;
    table.hidden = true;
    return;
  }
  note.hidden = true;
  table.hidden = false;
  $("#events tbody").replaceChildren(
    ...result.value.items.map((e) =>
      el("tr", { "data-event": e.key }, el("td", {}, when(e.at)), el("td", {}, SOURCES[e.source] || e.source), el("td", {}, EVENT_KINDS[e.kind] || e.kind), el("td", {}, el("code", {}, e.key ?? "")), el("td", { class: `outcome-${e.outcome}` }, OUTCOMES[e.outcome] || e.outcome), el("td", {}, e.reason ?? "")),
    ),
  );
}

/** Everything parked and the dead letters (no keys), or only the parked items named by `keys`. */
async function replay(keys) {
  const status = $("#replay-status");
  say(status, "Отправляем на повтор…");
  try {
    const reply = await api("POST", `/integrations/${state.id}/replay`, keys ? { keys } : undefined);
    const count = Object.values(reply.replayed || {}).reduce((a, b) => a + b, 0) + (reply.dead_letters_redriven || 0);
    const background = reply.dead_letters && reply.dead_letters.state === "running" ? " Остальное из очереди ошибок возвращается в фоне." : "";
    const kept = (reply.kept || []).length ? ` Не удалось повторить: ${reply.kept.join(", ")}.` : "";
    say(status, `Отправлено на повтор: ${count}.${background}${kept} Обновите список через несколько секунд.`, "ok");
    setTimeout(() => loadRaw(), 1500);
  } catch (err) {
    say(status, describe(err), "bad");
  }
}

async function rotateWebhooks() {
  const status = $("#rotate-status");
  const sure = window.confirm(
    "Сменить адреса вебхуков?\n\nСтарые адреса перестанут работать сразу: новый адрес нужно будет вставить в триггеры AlfaCRM и в уведомления UIS.",
  );
  if (!sure) return say(status, "Адреса не изменены");
  $("#rotate-result").hidden = true;
  say(status, "Меняем…");
  try {
    const reply = await api("POST", `/integrations/${state.id}/webhooks/rotate`);
    state.webhooks = reply.webhooks;
    renderIntegration();
    say(status, "Новые адреса выданы: замените их в AlfaCRM и в уведомлениях UIS. Старые больше не принимаются.", "ok");
    const address = (label, url) => el("div", {}, el("b", {}, `${label}: `), el("code", {}, url));
    $("#rotate-result").replaceChildren(
      address("Webhook AlfaCRM (оба триггера: Клиент и Платёж)", reply.webhooks.alfacrm),
      address("Уведомления UIS (к адресу добавляется ?event=…, см. «Текстовые коммуникации»)", reply.webhooks.uis),
    );
    $("#rotate-result").hidden = false;
  } catch (err) {
    say(status, describe(err), "bad");
  }
}

function renderFunnelSync() {
  const note = $("#funnel-sync");
  const pending = state.integration && state.integration.funnel_sync;
  note.hidden = !pending;
  if (pending) note.textContent = `Настройки сохранены, но UIS пока не принял воронки (${pending.error}). Повторим автоматически; попыток: ${pending.attempts}.`;
}

// ------------------------------------------------------------------------------------------ tabs and wiring
function selectTab(name) {
  for (const button of $$(".tabs [data-tab]")) button.setAttribute("aria-selected", String(button.dataset.tab === name));
  for (const panel of $$(".tab")) panel.hidden = panel.id !== `tab-${name}`;
  if (name === "raw" && state.id) loadRaw();
}

function wire() {
  $("#sign-in-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = tokenFrom($("#sign-in-token").value);
    if (!value) return;
    setToken(value);
    $("#sign-in-token").value = "";
    start().catch(showGlobal);
  });
  $("#sign-out").addEventListener("click", () => {
    setToken("");
    window.location.reload();
  });
  $("#integration-select").addEventListener("change", (e) => e.target.value && openIntegration(e.target.value).catch(showGlobal));
  $("#issue-access").addEventListener("click", issueAccess);
  $("#create-form").addEventListener("submit", createSchool);
  $("#active-switch").addEventListener("change", toggleActive);
  $("#check-alfacrm").addEventListener("click", () => checkSide("alfacrm", $("#alfacrm-check")));
  $("#check-uis").addEventListener("click", () => checkSide("uis", $("#uis-check")));
  $("#save-credentials").addEventListener("click", saveCredentials);
  $$(".save").forEach((b) => b.addEventListener("click", () => save(b)));
  $$(".tabs [data-tab]").forEach((b) => b.addEventListener("click", () => selectTab(b.dataset.tab)));
  $("#deals-refresh").addEventListener("click", () => loadRaw());
  $("#deals-funnel").addEventListener("change", () => loadRaw());
  $("#replay").addEventListener("click", () => replay());
  $("#rotate-webhooks").addEventListener("click", rotateWebhooks);
  $("#check-health").addEventListener("click", checkHealth);
  $("#lead-on-event").addEventListener("change", updateReveals);
  $$("[data-reveals]").forEach((b) => b.addEventListener("change", updateReveals));
  document.addEventListener("click", (e) => {
    const button = e.target.closest("[data-copy]");
    if (button) copy(button.dataset.copy, button);
  });
  document.addEventListener("input", (e) => {
    // an edited field loses its error mark; the message stays until the next save
    if (e.target.classList.contains("invalid")) e.target.classList.remove("invalid");
  });
  setupParamMenu();
}

function showGlobal(err) {
  $("#global-error").textContent = describe(err);
}

window.addEventListener("unhandledrejection", (e) => showGlobal(e.reason));
wire();
readFragment();
if (token()) start().catch(showGlobal);
else showSignIn();
