/* Web chat widget of the mutuelle gateway. Embed with one tag:
 *   <script src="https://GATEWAY/webchat/widget.js" defer></script>
 * Optional attributes: data-title="…" (panel header), data-greeting="…" (first bubble),
 * data-open="true" (panel open on load).
 * No dependencies, no inline code or style, no eval; text is rendered with textContent only.
 *
 * Reliability: the session token is kept in localStorage (a reload resumes the conversation);
 * each message gets a client id and stays in localStorage until acknowledged, and is resent
 * with the same id after a reconnect (the gateway de-duplicates); the socket resumes after the
 * last outbox entry shown, so a reconnect neither loses nor repeats anything. */
(function () {
  "use strict";
  var script = document.currentScript;
  var base = new URL(script && script.src ? script.src : "/webchat/widget.js", window.location.href);
  var origin = base.origin;
  var cfg = (script && script.dataset) || {};
  var NS = "mutuelle-webchat-";
  var TOKEN_KEY = NS + "token";
  var PENDING_KEY = NS + "pending";
  var SEEN_KEY = NS + "seen";
  var MAX_TEXT = 4000;

  var memory = {};  // when localStorage is unavailable (private browsing, blocked storage)
  function getItem(key) {
    try { return window.localStorage.getItem(key); } catch (e) { return memory[key] || null; }
  }
  function setItem(key, value) {
    try { window.localStorage.setItem(key, value); } catch (e) { memory[key] = value; }
  }
  function removeItem(key) {
    try { window.localStorage.removeItem(key); } catch (e) { delete memory[key]; }
  }

  var ws = null;
  var lastId = "0";          // last outbox entry received on this page (resume point)
  var shown = {};            // client ids ("c:") and reply ids ("m:") already on screen
  var retry = 0;
  var checkToken = true;     // ask the gateway whether the kept token is still genuine
  var timer = null;
  var connecting = false;    // a session request or handshake is under way

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return "c" + Date.now().toString(36) + Math.random().toString(36).slice(2, 14);
  }
  function loadPending() {
    try {
      var list = JSON.parse(getItem(PENDING_KEY) || "[]");
      return Array.isArray(list) ? list : [];
    } catch (e) { return []; }
  }
  function savePending(list) { setItem(PENDING_KEY, JSON.stringify(list)); }
  function dropPending(clientId) {
    savePending(loadPending().filter(function (p) { return p.client_id !== clientId; }));
  }
  // Stream ids are "<ms>-<seq>": compare numerically.
  function after(a, b) {
    var x = String(a).split("-"), y = String(b || "0").split("-");
    var d = Number(x[0]) - Number(y[0]);
    return d !== 0 ? d > 0 : Number(x[1] || 0) > Number(y[1] || 0);
  }

  var css = el("link");
  css.rel = "stylesheet";
  css.href = origin + "/webchat/widget.css";
  document.head.appendChild(css);

  var root = el("div", "mwc-root");
  var toggle = el("button", "mwc-toggle", "Discuter avec nous");
  toggle.type = "button";
  toggle.setAttribute("aria-expanded", "false");
  var panel = el("section", "mwc-panel");
  panel.id = NS + "panel";
  toggle.setAttribute("aria-controls", panel.id);
  panel.hidden = true;
  panel.setAttribute("aria-label", "Messagerie de votre mutuelle");
  var header = el("header", "mwc-header", cfg.title || "Votre mutuelle");
  var status = el("p", "mwc-status", "Connexion…");
  status.setAttribute("role", "status");
  var log = el("ol", "mwc-log");
  log.setAttribute("aria-live", "polite");
  var form = el("form", "mwc-form");
  var input = el("textarea", "mwc-input");
  input.rows = 2;
  input.maxLength = MAX_TEXT;
  input.placeholder = "Écrivez votre message…";
  input.setAttribute("aria-label", "Votre message");
  var send = el("button", "mwc-send", "Envoyer");
  send.type = "submit";
  form.appendChild(input);
  form.appendChild(send);
  panel.appendChild(header);
  panel.appendChild(status);
  panel.appendChild(log);
  panel.appendChild(form);
  root.appendChild(panel);
  root.appendChild(toggle);
  document.body.appendChild(root);
  log.appendChild(el("li", "mwc-msg mwc-bot", cfg.greeting || "Bonjour ! Comment pouvons-nous vous aider ?"));

  function setOpen(open) {
    panel.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    if (open) input.focus();
  }
  toggle.addEventListener("click", function () { setOpen(panel.hidden); });
  if (cfg.open === "true") setOpen(true);

  // Messages from the gateway go above the member's messages still waiting for their ack.
  function render(kind, text, key, state) {
    if (key && shown[key]) {
      if (state) shown[key].setAttribute("data-state", state);
      return false;
    }
    var item = el("li", "mwc-msg " + (kind === "member" ? "mwc-member" : "mwc-bot"), text);
    if (state) item.setAttribute("data-state", state);
    if (key) shown[key] = item;
    var firstPending = state === "pending" ? null : log.querySelector('[data-state="pending"]');
    log.insertBefore(item, firstPending);
    log.scrollTop = log.scrollHeight;
    return true;
  }

  function transmit(frame) {
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    var item = { client_id: uuid(), text: text };
    var pending = loadPending();
    pending.push(item);
    savePending(pending);
    render("member", text, "c:" + item.client_id, "pending");
    input.value = "";
    transmit({ type: "message", client_id: item.client_id, text: item.text });
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      if (form.requestSubmit) form.requestSubmit(); else send.click();
    }
  });

  function onFrame(frame) {
    if (!frame || typeof frame !== "object") return;
    if (frame.id && frame.type !== "error") lastId = frame.id;
    if (frame.type === "ack") {
      dropPending(frame.client_id);
      render("member", "", "c:" + frame.client_id, "sent");
    } else if (frame.type === "echo") {
      render("member", String(frame.text), "c:" + frame.client_id, "sent");
    } else if (frame.type === "message") {
      var isNew = render("bot", String(frame.text), "m:" + (frame.msg_id || frame.id));
      if (isNew && frame.id && after(frame.id, getItem(SEEN_KEY))) {
        if (transmit({ type: "seen", id: frame.id })) setItem(SEEN_KEY, frame.id);
      }
    } else if (frame.type === "error") {
      status.textContent = frame.message || "Erreur.";
      if (frame.client_id) {
        dropPending(frame.client_id);
        render("member", "", "c:" + frame.client_id, "error");
      }
    }
  }

  // The kept token while it is genuine (same conversation), else a new one from the gateway.
  function session() {
    var kept = getItem(TOKEN_KEY);
    if (kept && !checkToken) return Promise.resolve(kept);
    return fetch(origin + "/webchat/session", {
      method: "POST", body: JSON.stringify({ token: kept || "" }), credentials: "omit", cache: "no-store"
    })
      .then(function (r) { if (!r.ok) throw new Error("session " + r.status); return r.json(); })
      .then(function (data) {
        checkToken = false;
        if (data.token !== kept) {  // a new conversation: nothing of the old one applies
          setItem(TOKEN_KEY, data.token);
          removeItem(SEEN_KEY);
          lastId = "0";
        }
        return data.token;
      });
  }

  function later() {
    clearTimeout(timer);
    retry = Math.min(retry + 1, 6);
    timer = setTimeout(connect, 300 * Math.pow(2, retry) * (0.5 + Math.random() / 2));
  }

  function connect() {
    clearTimeout(timer);
    if (connecting || ws) return;
    connecting = true;
    session().then(function (token) {
      var url = origin.replace(/^http/, "ws") + "/webchat/ws?token=" + encodeURIComponent(token) +
        "&after=" + encodeURIComponent(lastId);
      var opened = false;
      ws = new WebSocket(url);
      connecting = false;
      ws.onopen = function () {
        opened = true;
        retry = 0;
        status.textContent = "Connecté";
        root.setAttribute("data-connected", "true");
        loadPending().forEach(function (item) {
          render("member", item.text, "c:" + item.client_id, "pending");
          transmit({ type: "message", client_id: item.client_id, text: item.text });
        });
      };
      ws.onmessage = function (event) {
        var frame;
        try { frame = JSON.parse(event.data); } catch (e) { return; }
        onFrame(frame);
      };
      ws.onclose = function () {
        ws = null;
        root.setAttribute("data-connected", "false");
        status.textContent = "Reconnexion…";
        if (!opened) checkToken = true;  // refused handshake: maybe a token the gateway no longer accepts
        later();
      };
    }).catch(function () {
      connecting = false;
      status.textContent = "Reconnexion…";
      later();
    });
  }

  window.addEventListener("online", function () {
    if (!ws && !connecting) { retry = 0; connect(); }
  });
  connect();
})();
