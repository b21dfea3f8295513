// The admin API as the page uses it: bearer token from sessionStorage, errors in the contract's shape.
// The API sits next to the page: `<base>/ui/` → `<base>/integrations/...` (works under an API Gateway stage).

const TOKEN_KEY = "alfacrm-uis-token";
export const apiBase = new URL("..", window.location.href).href.replace(/\/$/, "");

export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

export function token() {
  return window.sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) window.sessionStorage.setItem(TOKEN_KEY, value);
  else window.sessionStorage.removeItem(TOKEN_KEY);
}

/** The integration a school token belongs to (`<id>.<secret>`), or null for the operator's token. */
export function tokenIntegration(value) {
  const match = /^([0-9a-f]{1,64})\.[A-Za-z0-9_-]{16,}$/.exec(value || "");
  return match ? match[1] : null;
}

export async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let reply;
  try {
    reply = await fetch(apiBase + path, init);
  } catch (err) {
    throw new ApiError(0, "network", "Сервер недоступен: " + err.message, null);
  }
  const text = await reply.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!reply.ok) {
    const e = (data && data.error) || {};
    throw new ApiError(reply.status, e.code || `http_${reply.status}`, e.message || text || reply.statusText, e.field || null);
  }
  return data;
}

/** Like api(), but a route or look-up this version of the API lacks (a 404 that is not about the
 * integration itself) answers null, so the page shows the part as «недоступно» instead of failing. */
export async function optional(method, path, body) {
  try {
    return await api(method, path, body);
  } catch (err) {
    if (err.status === 404 && !/^integration \S+ not found/.test(err.message)) return null;
    throw err;
  }
}
