/* Web chat widget of the mutuelle gateway. Embed with one tag:
 *   <script src="https://GATEWAY/webchat/widget.js" defer></script>
 * No dependencies, no inline code, text rendered with textContent only.
 * Accessibility: every message names its speaker (« Vous », « Assistant », « Julie, conseillère »);
 * messages that arrive while the page is open are read out through a polite live region, the
 * history replayed on (re)connection is not; Escape closes the panel and gives focus back.
 * Privacy: « Terminer la conversation » ends the session on the server and clears the panel; each page
 * load is a new « view » (an id kept in memory only), so a reopened widget gets the earlier history of a
 * conversation that showed the member's data as « contenu masqué », and must prove who it is again. */
(function () {
  "use strict";
  var script = document.currentScript;
  var base = new URL(script && script.src ? script.src : "/webchat/widget.js", window.location.href);
  var origin = base.origin;
  var TOKEN_KEY = "mutuelle-webchat-token";
  var PENDING_KEY = "mutuelle-webchat-pending";
  var ws = null;
  var lastId = "0";
  var shown = {};      // client ids and message ids already on screen
  var retry = 0;
  var caughtUp = false; // this socket's replay of past messages is over: what comes now is new
  var SPEAKERS = { member: "Vous", bot: "Assistant" };
  var MASKED = "contenu masqué";
  var GREETING = "Bonjour ! Comment pouvons-nous vous aider ?";
  var view = "";      // this page load (set below); never stored
  var ending = false;  // the session is being ended: the socket's close starts a new one

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return "c" + Date.now().toString(36) + Math.random().toString(36).slice(2, 12);
  }
  function loadPending() {
    try { return JSON.parse(localStorage.getItem(PENDING_KEY) || "[]"); } catch (e) { return []; }
  }
  function savePending(list) { localStorage.setItem(PENDING_KEY, JSON.stringify(list)); }

  view = uuid();

  var css = el("link");
  css.rel = "stylesheet";
  css.href = origin + "/webchat/widget.css";
  document.head.appendChild(css);

  var root = el("aside", "mwc-root");
  root.setAttribute("aria-label", "Messagerie de votre mutuelle");
  var toggle = el("button", "mwc-toggle", "Discuter avec nous");
  toggle.type = "button";
  toggle.setAttribute("aria-expanded", "false");
  toggle.setAttribute("aria-controls", "mwc-panel");
  var panel = el("section", "mwc-panel");
  panel.id = "mwc-panel";
  panel.hidden = true;
  panel.setAttribute("aria-labelledby", "mwc-title");
  var header = el("header", "mwc-header");
  var title = el("h2", "mwc-title", "Votre mutuelle");
  title.id = "mwc-title";
  var close = el("button", "mwc-close", "Fermer");
  close.type = "button";
  close.setAttribute("aria-label", "Fermer la messagerie");
  var finish = el("button", "mwc-end", "Terminer la conversation");
  finish.type = "button";
  var actions = el("div", "mwc-actions");
  actions.appendChild(finish);
  actions.appendChild(close);
  header.appendChild(title);
  header.appendChild(actions);
  var status = el("p", "mwc-status", "Connexion…");
  status.setAttribute("role", "status");
  var log = el("ol", "mwc-log");
  log.setAttribute("aria-label", "Messages");
  log.tabIndex = 0; // scrollable: reachable with the keyboard
  var announce = el("p", "mwc-sr");
  announce.setAttribute("aria-live", "polite");
  var form = el("form", "mwc-form");
  var input = el("textarea", "mwc-input");
  input.rows = 2;
  input.maxLength = 4000;
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
  panel.appendChild(announce);
  root.appendChild(panel);
  root.appendChild(toggle);
  document.body.appendChild(root);

  function setOpen(open) {
    panel.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    if (open) {
      input.focus();
      log.scrollTop = log.scrollHeight;
    } else {
      toggle.focus();
    }
  }
  toggle.addEventListener("click", function () { setOpen(panel.hidden); });
  close.addEventListener("click", function () { setOpen(false); });
  panel.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      event.preventDefault();
      setOpen(false);
    }
  });

  var STATES = { pending: "envoi en cours", error: "non envoyé" };
  function setState(item, state) {
    item.setAttribute("data-state", state);
    item.querySelector(".mwc-state").textContent = STATES[state] ? " · " + STATES[state] : "";
  }

  // kind: "member", "bot" or "agent" (then ``speaker`` names the agent: « Julie, conseillère »).
  function render(kind, text, key, state, speaker) {
    if (key && shown[key]) {
      if (state) setState(shown[key], state);
      return;
    }
    var item = el("li", "mwc-msg mwc-" + kind);
    var who = el("span", "mwc-speaker", speaker || SPEAKERS[kind] || SPEAKERS.bot);
    who.appendChild(el("span", "mwc-state"));
    item.appendChild(who);
    item.appendChild(el("span", "mwc-visually-hidden", " : "));
    item.appendChild(el("span", "mwc-text", text));
    if (state) setState(item, state);
    if (key) shown[key] = item;
    log.appendChild(item);
    log.scrollTop = log.scrollHeight;
    if (kind !== "member" && caughtUp) announce.textContent = who.firstChild.textContent + " : " + text;
  }
  render("bot", GREETING);

  // The conversation is over (ended here, or by the server: inactivity, maximum length): nothing of it
  // stays on screen or in the browser; the next message starts a new session.
  function cleared(message) {
    while (log.firstChild) log.removeChild(log.firstChild);
    shown = {};
    lastId = "0";
    localStorage.removeItem(TOKEN_KEY);
    localStorage.removeItem(PENDING_KEY);
    render("bot", GREETING);
    status.textContent = message;
    announce.textContent = message;
  }

  finish.addEventListener("click", function () {
    var saved = localStorage.getItem(TOKEN_KEY);
    ending = true;
    var done = function () {
      cleared("Conversation terminée. Vos messages ne sont plus affichés sur cet appareil.");
      if (ws) ws.close(); else { ending = false; connect(); }
      input.focus();
    };
    if (!saved) { done(); return; }
    fetch(origin + "/webchat/session/end", { method: "POST", headers: { "Content-Type": "application/json" },
                                            body: JSON.stringify({ token: saved }) })
      .then(done, done);
  });

  function transmit(item) {
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: "message", client_id: item.client_id, text: item.text }));
    }
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    var item = { client_id: uuid(), text: text };
    var pending = loadPending();
    pending.push(item);
    savePending(pending);
    render("member", text, item.client_id, "pending");
    input.value = "";
    transmit(item);
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  function onFrame(frame) {
    if (frame.id) lastId = frame.id;
    if (frame.type === "ack") {
      savePending(loadPending().filter(function (p) { return p.client_id !== frame.client_id; }));
      render("member", "", frame.client_id, "sent");
    } else if (frame.masked) {
      // Earlier messages of a conversation that showed the member's data: not shown again here.
      if (frame.type === "echo") render("member", MASKED, frame.client_id, "sent");
      else if (frame.from === "agent") render("agent", MASKED, "m:" + frame.msg_id, null, "Conseiller");
      else if (frame.type === "message") render("bot", MASKED, "m:" + frame.msg_id);
      status.textContent = "Par sécurité, les messages précédents sont masqués.";
    } else if (frame.type === "ended") {
      ending = true;
      cleared(frame.message || "Conversation terminée.");
    } else if (frame.type === "echo") {
      render("member", frame.text, frame.client_id, "sent");
    } else if (frame.type === "message") {
      if (frame.from === "agent") render("agent", frame.text, "m:" + frame.msg_id, null, frame.speaker);
      else render("bot", frame.text, "m:" + frame.msg_id);
    } else if (frame.type === "caught_up") {
      caughtUp = true;
    } else if (frame.type === "error") {
      status.textContent = frame.message || "Erreur.";
      if (frame.client_id) {
        savePending(loadPending().filter(function (p) { return p.client_id !== frame.client_id; }));
        render("member", "", frame.client_id, "error");
      }
    }
  }

  function token() {
    var saved = localStorage.getItem(TOKEN_KEY);
    if (saved) return Promise.resolve(saved);
    return fetch(origin + "/webchat/session", { method: "POST" })
      .then(function (r) { if (!r.ok) throw new Error("session"); return r.json(); })
      .then(function (data) { localStorage.setItem(TOKEN_KEY, data.token); return data.token; });
  }

  // The socket closed before it ever opened: a server refusing the saved token looks like a network
  // failure to the page (close 1006), so ask the server whether the token is still good.
  function checkToken() {
    var saved = localStorage.getItem(TOKEN_KEY);
    if (!saved) return Promise.resolve();
    return fetch(origin + "/webchat/session", { method: "POST", headers: { "Content-Type": "application/json" },
                                                body: JSON.stringify({ token: saved }) })
      .then(function (r) { if (!r.ok) throw new Error("session"); return r.json(); })
      .then(function (data) { if (data.token !== saved) localStorage.setItem(TOKEN_KEY, data.token); })
      .catch(function () { /* the server is unreachable: keep the token */ });
  }

  function connect() {
    token().then(function (t) {
      var opened = false;
      var url = origin.replace(/^http/, "ws") + "/webchat/ws?token=" + encodeURIComponent(t) +
        "&after=" + encodeURIComponent(lastId) + "&mark=1&view=" + encodeURIComponent(view);
      caughtUp = false;
      ws = new WebSocket(url);
      ws.onopen = function () {
        opened = true;
        retry = 0;
        if (!/terminée|masqués/.test(status.textContent)) status.textContent = "Connecté";
        root.setAttribute("data-connected", "true");
        loadPending().forEach(function (item) {
          render("member", item.text, item.client_id, "pending");
          transmit(item);
        });
      };
      ws.onmessage = function (event) {
        try { onFrame(JSON.parse(event.data)); } catch (e) { /* ignore a malformed frame */ }
      };
      ws.onclose = function (event) {
        root.setAttribute("data-connected", "false");
        if (ending) {  // ended: a new session at once, with nothing of the old one
          ending = false;
          retry = 0;
          localStorage.removeItem(TOKEN_KEY);
          setTimeout(connect, 50);
          return;
        }
        if (event.code === 1008 || event.code === 4403) localStorage.removeItem(TOKEN_KEY);
        status.textContent = "Reconnexion…";
        retry = Math.min(retry + 1, 6);
        var delay = 300 * Math.pow(2, retry);
        if (!opened) checkToken().then(function () { setTimeout(connect, delay); });
        else setTimeout(connect, delay);
      };
    }).catch(function () {
      status.textContent = "Reconnexion…";
      retry = Math.min(retry + 1, 6);
      setTimeout(connect, 300 * Math.pow(2, retry));
    });
  }
  connect();
})();
