/* РМО UIS для AlfaCRM: кнопка на карточке клиента открывает рабочее место оператора UIS и передаёт телефон клиента.
 *
 * Loaded by AlfaCRM's custom-code block / extension as
 *   <script src="https://<connector>/widget/alfacrm.js?integration=<id>" async></script>
 * The server inlines the integration's widget settings below. The script runs inside somebody else's page:
 * everything is wrapped, nothing is thrown, timers are bounded, and an unreachable workplace only shows a
 * notice in the widget's own panel.
 *
 * Messages to the workplace (window.postMessage, target origin = the workplace's origin):
 *   {source: "alfacrm-uis-widget", type: "search_channels", phone: "+79161234567"}
 *   {source: "alfacrm-uis-widget", type: "open_chat", phone: "+79161234567"}
 * Any message back from the workplace's origin counts as its answer (UIS's workplace sends search results
 * and missed-event counts); until one arrives the two messages are re-sent every second, for 8 s at most.
 */
(function (config) {
  "use strict";
  var ROOT_ID = "uis-rmo-widget";
  var ANSWER_TIMEOUT_MS = 8000;
  var RESEND_MS = 1000;
  var CARD_PATH = /\/customer\/(view|update)\b|[?&]r=customer%2Fview\b/;

  function safe(fn) {
    return function () {
      try {
        return fn.apply(this, arguments);
      } catch (err) {
        try {
          window.console && console.warn("РМО UIS: " + (err && err.message ? err.message : err));
        } catch (ignored) {
          /* nothing more to do */
        }
        return undefined;
      }
    };
  }

  safe(function main() {
    if (!config || !config.enabled || !config.workplace_url) return;
    if (window.__uisRmoWidget) return; // loaded twice: the first copy does the work
    window.__uisRmoWidget = true;

    var workplace = new URL(config.workplace_url);
    var state = { phone: null, panel: null, frame: null, popup: null, answered: false, timer: null, deadline: 0 };

    function normalise(raw) {
      var digits = String(raw || "").replace(/\D/g, "");
      if (digits.length === 11 && digits.charAt(0) === "8") digits = "7" + digits.slice(1);
      if (digits.length === 10) digits = "7" + digits;
      return digits.length >= 10 && digits.length <= 15 ? "+" + digits : null;
    }

    function findPhone() {
      var links = document.querySelectorAll('a[href^="tel:"]');
      for (var i = 0; i < links.length; i++) {
        if (links[i].closest("#" + ROOT_ID)) continue;
        var phone = normalise(links[i].getAttribute("href").slice(4));
        if (phone) return phone;
      }
      var marked = document.querySelectorAll("[data-phone], .phone, [class*='phone']");
      for (var j = 0; j < marked.length; j++) {
        if (marked[j].closest("#" + ROOT_ID)) continue;
        var candidate = normalise(marked[j].getAttribute("data-phone") || marked[j].textContent);
        if (candidate) return candidate;
      }
      return null;
    }

    function onCard() {
      return CARD_PATH.test(window.location.pathname + window.location.search) || !!document.querySelector("[data-uis-rmo-card]");
    }

    function message(type) {
      return { source: "alfacrm-uis-widget", type: type, phone: state.phone, integration: config.integration };
    }

    var post = safe(function () {
      var target = state.frame ? state.frame.contentWindow : state.popup;
      if (!target) return;
      target.postMessage(message("search_channels"), workplace.origin);
      target.postMessage(message("open_chat"), workplace.origin);
    });

    function stopTimer() {
      if (state.timer) window.clearInterval(state.timer);
      state.timer = null;
    }

    var tick = safe(function () {
      if (state.answered) return stopTimer();
      if (Date.now() > state.deadline) {
        stopTimer();
        notice("Рабочее место UIS не отвечает. Проверьте адрес в настройках интеграции или откройте его в новом окне.");
        return;
      }
      post();
    });

    function startHandshake() {
      stopTimer();
      state.answered = false;
      state.deadline = Date.now() + ANSWER_TIMEOUT_MS;
      state.timer = window.setInterval(tick, RESEND_MS);
      post();
    }

    window.addEventListener(
      "message",
      safe(function (event) {
        if (event.origin !== workplace.origin) return;
        if (event.source !== (state.frame && state.frame.contentWindow) && event.source !== state.popup) return;
        state.answered = true;
        stopTimer();
        notice("");
      }),
    );

    function notice(text) {
      if (!state.panel) return;
      var box = state.panel.querySelector("[data-rmo-notice]");
      box.textContent = text;
      box.style.display = text ? "block" : "none";
    }

    function el(tag, style, text) {
      var node = document.createElement(tag);
      if (style) node.setAttribute("style", style);
      if (text) node.textContent = text;
      return node;
    }

    function closePanel() {
      stopTimer();
      if (state.panel) state.panel.remove();
      state.panel = null;
      state.frame = null;
    }

    function openWindow() {
      state.popup = window.open(workplace.href, "uis-rmo");
      if (!state.popup) {
        openPanel(true);
        notice("Браузер не дал открыть окно. Разрешите всплывающие окна для этого сайта.");
        return;
      }
      startHandshake();
    }

    function openPanel(withoutFrame) {
      closePanel();
      var panel = el(
        "div",
        "position:fixed;top:0;right:0;bottom:0;width:420px;max-width:100%;z-index:2147483000;background:#fff;" +
          "box-shadow:-4px 0 16px rgba(0,0,0,.2);display:flex;flex-direction:column;font:14px system-ui,sans-serif;color:#1d2330",
      );
      panel.setAttribute("data-rmo-panel", "");
      var head = el("div", "display:flex;align-items:center;gap:8px;padding:8px 12px;border-bottom:1px solid #d9dee7");
      head.appendChild(el("b", "flex:1", "РМО UIS · " + (state.phone || "")));
      var external = el("a", "color:#1f6feb", "В новом окне");
      external.href = workplace.href;
      external.target = "_blank";
      external.rel = "noopener";
      head.appendChild(external);
      var close = el("button", "border:none;background:none;font-size:20px;cursor:pointer;line-height:1", "×");
      close.type = "button";
      close.setAttribute("aria-label", "Закрыть");
      close.addEventListener("click", safe(closePanel));
      head.appendChild(close);
      panel.appendChild(head);
      var note = el("div", "display:none;padding:10px 12px;background:#fff6e0;border-bottom:1px solid #f0c36d");
      note.setAttribute("data-rmo-notice", "");
      note.setAttribute("role", "status");
      panel.appendChild(note);
      state.panel = panel;
      document.body.appendChild(panel);
      if (withoutFrame) return;
      var frame = el("iframe", "flex:1;border:0;width:100%");
      frame.title = "Рабочее место оператора UIS";
      frame.setAttribute("allow", "microphone; clipboard-write");
      frame.addEventListener("load", safe(post));
      frame.src = workplace.href;
      state.frame = frame;
      panel.appendChild(frame);
      // one deadline from opening: a refused connection (an error page that loads) and a hung one alike
      startHandshake();
    }

    var button = el(
      "button",
      "position:fixed;right:20px;bottom:20px;z-index:2147483000;padding:10px 16px;border:0;border-radius:20px;" +
        "background:#1f6feb;color:#fff;font:600 14px system-ui,sans-serif;box-shadow:0 2px 8px rgba(0,0,0,.25);cursor:pointer",
      "РМО UIS",
    );
    button.type = "button";
    button.id = ROOT_ID;
    button.title = "Открыть рабочее место оператора UIS для этого клиента";
    button.addEventListener(
      "click",
      safe(function () {
        state.phone = findPhone() || state.phone;
        if (config.open_in === "window") openWindow();
        else openPanel(false);
      }),
    );

    // AlfaCRM changes pages without reloading: look again now and then, and only show the button on a card with a phone.
    var refresh = safe(function () {
      var phone = onCard() ? findPhone() : null;
      state.phone = phone;
      if (phone && !button.isConnected && document.body) document.body.appendChild(button);
      if (!phone && button.isConnected) {
        button.remove();
        closePanel();
      }
    });
    refresh();
    window.setInterval(refresh, 1500);
  })();
})(__WIDGET_CONFIG__);
