// Agents' console and supervisor's dashboard. Everything the member or an agent wrote is put in
// the page with textContent (never as HTML). Live: a WebSocket says what changed; the page then
// asks the JSON API. POSTs carry the session's CSRF token.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const CHANNELS = { sms: "SMS", telegram: "Telegram", email: "E-mail", webchat: "Chat web", callback: "Rappel", phone: "Téléphone" };
  const STATUS = { queued: "en file", sending: "envoi", sent: "envoyé", delivered: "reçu", read: "lu", failed: "échec", undelivered: "non distribué", canceled: "annulé" };
  let state = null;
  let current = null; // conversation id shown in the detail pane
  let canned = [];
  const drafts = { reply: new Map(), note: new Map() }; // kept across live re-renders
  const REASONS = { ask_human: "demande un conseiller", complaint: "réclamation déposée", verification_failed: "identité non vérifiée", misunderstood: "incompris deux fois", callback: "demande de rappel" };
  const CLAIM = { received: "reçue", in_progress: "en cours", paid: "payée", rejected: "refusée" };
  const COMPLAINT = { open: "en cours", answered: "répondue", closed: "close" };
  const QUOTE = { received: "reçu", in_review: "à l'étude", accepted: "accepté", refused: "refusé" };
  const CARD = { in_production: "en fabrication", sent: "envoyée", delivered: "distribuée", returned: "revenue" };
  function frDate(iso) { return iso ? iso.split("-").reverse().join("/") : "—"; }
  function euros(v) { return v === "" || v === undefined ? "—" : `${Number(v).toLocaleString("fr-FR", { minimumFractionDigits: 2, maximumFractionDigits: 2 })} €`; }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (value !== undefined && value !== null) node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function showEmpty(text) {
    const pane = document.getElementById("detail");
    delete pane.dataset.layout;
    pane.replaceChildren(el("p", { class: "empty" }, text));
  }

  function toast(text) {
    const box = document.getElementById("toast");
    box.textContent = text;
    box.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { box.hidden = true; }, 5000);
  }

  async function api(path, body) {
    const init = body === undefined
      ? { credentials: "same-origin" }
      : { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body) };
    const resp = await fetch(path, init);
    if (resp.status === 401) { location.href = "/console/login"; throw new Error("login"); }
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) { toast(data.detail || "Action refusée."); throw new Error(data.detail || resp.status); }
    return data;
  }

  function waited(ms) {
    const s = Math.max(0, Math.floor((Date.now() - ms) / 1000));
    return s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")}` : `${Math.floor(s / 3600)} h ${String(Math.floor(s / 60) % 60).padStart(2, "0")}`;
  }

  function time(ms) {
    return ms ? new Date(Number(ms)).toLocaleString("fr-FR", { dateStyle: "short", timeStyle: "short" }) : "";
  }

  // Console -----------------------------------------------------------------------------------
  async function refresh() {
    state = await api("/console/api/state");
    renderQueue();
    renderMine();
    if (current) await openConversation(current, false);
  }

  function renderQueue() {
    const list = document.getElementById("queue");
    list.replaceChildren();
    document.getElementById("queue-count").textContent = String(state.queue.length);
    for (const item of state.queue) {
      const timer = el("span", { class: "timer", "data-since": item.since_ms }, waited(item.since_ms));
      const row = el("li", { class: `item ${item.urgent ? "urgent" : ""}`, "data-id": item.id, "data-kind": item.kind },
        el("span", { class: "chan" }, CHANNELS[item.channel] || item.channel),
        el("span", { class: "skill" }, state.skills[item.skill] || item.skill),
        item.urgent ? el("strong", { class: "flag" }, "URGENT") : null,
        timer,
        el("div", { class: "reason" }, item.reason),
        el("div", { class: "summary" }, item.summary));
      if (item.kind === "conversation") {
        row.append(el("button", { type: "button", class: "take", onclick: (e) => { e.stopPropagation(); take(item.id); } }, "Prendre"));
        row.addEventListener("click", () => openConversation(item.id));
      } else {
        for (const [outcome, label] of [["done", "Rappel effectué"], ["no_answer", "Pas de réponse"], ["wrong_number", "Mauvais numéro"]]) {
          row.append(el("button", { type: "button", class: `cb-${outcome}`, onclick: () => callbackOutcome(item.id, outcome) }, label));
        }
      }
      list.append(row);
    }
    tickTimers();
  }

  function renderMine() {
    const list = document.getElementById("mine");
    list.replaceChildren();
    for (const conv of state.mine) {
      list.append(el("li", { class: `item mine ${conv.id === current ? "current" : ""}`, "data-id": conv.id, onclick: () => openConversation(conv.id) },
        el("span", { class: "chan" }, CHANNELS[conv.channel] || conv.channel),
        el("span", { class: "summary" }, conv.handoff_summary || ""),
        el("span", { class: "timer", "data-since": conv.assigned_ms }, waited(conv.assigned_ms))));
    }
  }

  function tickTimers() {
    const target = (state && state.pickup_target_s) || 60;
    for (const node of document.querySelectorAll("#queue .timer")) {
      const since = Number(node.dataset.since);
      node.textContent = waited(since);
      node.classList.toggle("late", Date.now() - since > target * 1000);
    }
  }

  async function take(id) {
    await api(`/console/api/conversations/${encodeURIComponent(id)}/take`, {});
    current = id;
    await refresh();
  }

  async function callbackOutcome(id, outcome) {
    await api(`/console/api/callbacks/${encodeURIComponent(id)}/outcome`, { outcome });
    toast("Rappel enregistré.");
    await refresh();
  }

  async function openConversation(id, scroll = true) {
    let data;
    try {
      data = await api(`/console/api/conversations/${encodeURIComponent(id)}`);
    } catch (err) {
      if (current === id) { current = null; showEmpty("Conversation inaccessible."); }
      return;
    }
    current = id;
    renderDetail(data, scroll);
    renderMine();
  }

  function renderDetail(data, scroll) {
    const conv = data.conversation;
    const mine = conv.status === "assigned" && conv.assigned_agent === state.me.login;
    const pane = document.getElementById("detail");
    const head = el("header", { class: "conv-head" },
      el("h2", {}, `${CHANNELS[conv.channel] || conv.channel} · ${REASONS[conv.handoff_reason] || conv.status}${conv.urgent ? " · URGENT" : ""}`),
      el("p", { class: "summary" }, conv.handoff_summary || ""),
      el("p", { class: "status", id: "conv-status" }, conv.status === "assigned" ? (mine ? "Vous avez pris cette conversation." : `Prise par ${conv.assigned_agent}`) : conv.status === "handoff" ? `En attente d'un conseiller depuis ${waited(conv.handoff_ms)}` : conv.status === "closed" ? "Clôturée" : "Avec l'assistant"));
    const log = el("ol", { class: "messages", id: "messages" });
    for (const m of data.messages) {
      log.append(el("li", { class: `msg ${m.direction}` },
        el("span", { class: "meta" }, `${m.direction === "in" ? "Adhérent" : m.agent ? `Conseiller (${m.agent})` : "Assistant"} · ${time(m.created_ms)}${m.direction === "out" && m.status ? " · " + (STATUS[m.status] || m.status) : ""}`),
        el("p", { class: "text" }, m.text)));
    }
    const notes = el("ol", { class: "notes" });
    for (const n of data.notes) notes.append(el("li", {}, el("span", { class: "meta" }, `${n.first_name} · ${time(n.at_ms)}`), el("p", {}, n.text)));
    const actions = el("div", { class: "actions" });
    if (conv.status === "handoff") {
      actions.append(el("button", { type: "button", id: "take-this", onclick: () => take(conv.id) }, "Prendre cette conversation"));
      if (state.me.role === "supervisor") {
        const assign = el("select", { id: "assign" }, el("option", { value: "" }, "Attribuer à…"),
          ...state.agents.filter((a) => a.role === "agent").map((a) => el("option", { value: a.login }, `${a.first_name} (${a.login})`)));
        assign.addEventListener("change", async (e) => {
          if (!e.target.value) return;
          await api(`/console/api/conversations/${encodeURIComponent(conv.id)}/assign`, { to_agent: e.target.value });
          toast("Conversation attribuée.");
          current = null;
          showEmpty("Conversation attribuée.");
          await refresh();
        });
        actions.append(assign);
      }
    }
    let replyBox = null;
    if (mine) {
      const select = el("select", { id: "canned", onchange: (e) => { const c = canned.find((x) => x.id === e.target.value); if (c) { document.getElementById("reply-text").value = c.text; drafts.reply.set(current, c.text); } e.target.value = ""; } },
        el("option", { value: "" }, "Réponses types…"), ...canned.map((c) => el("option", { value: c.id }, c.title)));
      const text = el("textarea", { id: "reply-text", rows: "3", maxlength: "4000", placeholder: "Votre réponse à l'adhérent", oninput: (e) => drafts.reply.set(conv.id, e.target.value) });
      text.value = drafts.reply.get(conv.id) || "";
      replyBox = el("form", { class: "reply", id: "reply-form", onsubmit: (e) => { e.preventDefault(); sendReply(conv.id); } },
        select, text, el("button", { type: "submit", id: "send" }, "Envoyer"));
      const transfer = el("select", { id: "transfer" }, el("option", { value: "" }, "Transférer à…"),
        ...Object.entries(state.skills).map(([k, v]) => el("option", { value: `skill:${k}` }, `File ${v}`)),
        ...state.agents.filter((a) => a.login !== state.me.login).map((a) => el("option", { value: `agent:${a.login}` }, `${a.first_name} (${a.login})`)));
      transfer.addEventListener("change", async (e) => {
        const [kind, value] = e.target.value.split(":");
        if (!value) return;
        await api(`/console/api/conversations/${encodeURIComponent(conv.id)}/transfer`, kind === "skill" ? { to_skill: value } : { to_agent: value });
        toast("Conversation transférée.");
        current = null;
        showEmpty("Conversation transférée.");
        await refresh();
      });
      actions.append(transfer,
        el("button", { type: "button", id: "give-back", onclick: () => act(conv.id, "bot", "Conversation rendue à l'assistant.") }, "Rendre à l'assistant"),
        el("button", { type: "button", id: "close", onclick: () => act(conv.id, "close", "Conversation clôturée, questionnaire envoyé.") }, "Clôturer"));
    }
    const noteForm = el("form", { class: "note", onsubmit: async (e) => {
      e.preventDefault();
      const value = drafts.note.get(conv.id) || "";
      if (!value.trim()) return;
      await api(`/console/api/conversations/${encodeURIComponent(conv.id)}/note`, { text: value });
      drafts.note.delete(conv.id);
      await openConversation(conv.id, false);
    } }, el("input", { id: "note-text", maxlength: "2000", placeholder: "Note interne (invisible pour l'adhérent)", oninput: (e) => drafts.note.set(conv.id, e.target.value) }), el("button", { type: "submit", id: "add-note" }, "Noter"));
    noteForm.querySelector("input").value = drafts.note.get(conv.id) || "";
    const fiche = renderFiche(data.member, data.past, Boolean(conv.verified_member));
    const layout = `${conv.id}|${conv.status}|${mine}`;
    if (pane.dataset.layout === layout) {
      // Same conversation, same state: refresh what changed, never the fields the agent is typing in.
      const oldLog = pane.querySelector("#messages");
      const atBottom = oldLog.scrollTop + oldLog.clientHeight >= oldLog.scrollHeight - 4;
      oldLog.replaceWith(log);
      pane.querySelector(".conv-head").replaceWith(head);
      pane.querySelector(".notes").replaceWith(notes);
      pane.querySelector("#fiche").replaceWith(fiche);
      if (atBottom || scroll) log.scrollTop = log.scrollHeight;
      return;
    }
    pane.dataset.layout = layout;
    pane.replaceChildren(el("div", { class: "conv" }, head, log, replyBox, actions, el("h3", {}, "Notes internes"), notes, noteForm), fiche);
    if (scroll) log.scrollTop = log.scrollHeight;
  }

  function renderFiche(record, past, verified) {
    const box = el("aside", { class: "fiche", id: "fiche" }, el("h3", {}, "Fiche adhérent"));
    if (!record) {
      box.append(el("p", { class: "empty" }, "Adhérent non identifié."));
    } else {
      const m = record.member;
      box.append(el("p", { class: "who" }, `${m.first_name} ${m.last_name} · ${m.number}`),
        el("p", {}, `Né(e) le ${frDate(m.birth_date)} · formule ${m.cover_level} · ${m.region}`),
        el("p", {}, `Cotisation ${euros(m.contribution_eur)} par mois, prochain appel le ${frDate(m.contribution_call_date)}`),
        el("p", { class: "verified" }, verified ? "Identité vérifiée par l'assistant." : "Identité non vérifiée : adresse enregistrée au dossier."));
      const sections = [
        ["Remboursements", record.claims, (c) => `${frDate(c.care_date)} ${c.kind} ${euros(c.amount_eur)} — ${CLAIM[c.status] || c.status}${c.reimbursed_eur ? ` : ${euros(c.reimbursed_eur)} le ${frDate(c.payment_date)}` : ""}`],
        ["Réclamations", record.complaints, (c) => `${c.id} du ${frDate(c.received_date)}${c.urgent ? " (urgente)" : ""} — ${COMPLAINT[c.status] || c.status}, échéance ${frDate(c.due_date)}`],
        ["Devis", record.quotes, (q) => `${q.kind} du ${frDate(q.received_date)} — ${QUOTE[q.status] || q.status}, reste à charge ${euros(q.out_of_pocket_eur)}`],
        ["Carte de tiers payant", record.card, (c) => `${CARD[c.status] || c.status}${c.dispatch_date ? ` (envoi le ${frDate(c.dispatch_date)})` : ""}`],
        ["Adhésion", record.membership, (a) => `reçue le ${frDate(a.received_date)}, accusé ${frDate(a.acknowledged_date)}`],
      ];
      for (const [title, rows, line] of sections) {
        if (!rows || !rows.length) continue;
        box.append(el("h4", {}, title), el("ul", {}, ...rows.map((r) => el("li", {}, line(r)))));
      }
    }
    if (past && past.length) {
      box.append(el("h4", {}, "Autres conversations"), el("ul", {}, ...past.map((p) => el("li", {}, `${CHANNELS[p.channel] || p.channel} · ${time(p.created_ms)} · ${p.status} · ${p.messages} message(s)`))));
    }
    return box;
  }

  async function sendReply(id) {
    const text = document.getElementById("reply-text");
    if (!text.value.trim()) return;
    const clientId = (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random().toString(16).slice(2)).replaceAll("-", "");
    await api(`/console/api/conversations/${encodeURIComponent(id)}/reply`, { text: text.value, client_id: clientId });
    text.value = "";
    drafts.reply.delete(id);
    await openConversation(id);
  }

  async function act(id, action, done) {
    await api(`/console/api/conversations/${encodeURIComponent(id)}/${action}`, {});
    toast(done);
    current = null;
    showEmpty(done);
    await refresh();
  }

  async function loadComplaints() {
    const list = document.getElementById("complaints");
    if (!list) return;
    const rows = await api("/console/api/complaints");
    list.replaceChildren(...rows.slice(0, 30).map((c) => el("li", { class: `item ${c.urgent ? "urgent" : ""}` },
      el("span", {}, `${c.id} · échéance ${frDate(c.due_date)}${c.urgent ? " · urgente" : ""}`),
      el("div", { class: "summary" }, c.subject),
      el("button", { type: "button", onclick: async () => { await api(`/console/api/complaints/${encodeURIComponent(c.member)}/${encodeURIComponent(c.id)}`, { status: "answered" }); toast("Réclamation marquée répondue."); loadComplaints(); } }, "Répondue"))));
  }

  // Supervisor ---------------------------------------------------------------------------------
  function pct(v) { return v === null || v === undefined ? "—" : `${Math.round(v * 100)} %`; }

  async function dashboard() {
    const data = await api("/console/api/stats?days=14");
    const now = data.now;
    document.getElementById("now").replaceChildren(
      el("div", { class: "kpi" }, el("span", {}, "En attente"), el("strong", { id: "kpi-waiting" }, String(now.waiting))),
      el("div", { class: "kpi" }, el("span", {}, "Conseillers en ligne"), el("strong", { id: "kpi-online" }, String(now.agents_online))),
      el("div", { class: "kpi" }, el("span", {}, "Attente la plus longue"), el("strong", {}, now.oldest_wait_ms ? waited(now.oldest_wait_ms) : "—")),
      ...Object.entries(now.waiting_by_skill).map(([k, v]) => el("div", { class: "kpi small" }, el("span", {}, k), el("strong", {}, String(v)))));
    const body = document.querySelector("#days tbody");
    body.replaceChildren(...data.days.slice().reverse().map((d) => el("tr", {},
      el("td", {}, d.day), el("td", {}, d.conversations || 0), el("td", {}, d.handoffs || 0), el("td", {}, d.queue_peak || 0),
      el("td", {}, d.agents || 0), el("td", {}, d.picked || 0),
      el("td", {}, pct(d.service_level)), el("td", {}, pct(d.answer_rate)), el("td", {}, pct(d.complaints_in_time_rate)),
      el("td", {}, d.csat === null ? "—" : String(d.csat).replace(".", ",")), el("td", {}, d.nps === null ? "—" : String(d.nps)),
      el("td", {}, pct(d.containment)))));
    // Bar chart (SVG): service level per day against the 80 % target.
    const ns = "http://www.w3.org/2000/svg";
    const w = 700, h = 200, pad = 28, bw = (w - pad) / data.days.length;
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${w} ${h + 20}`);
    const line = document.createElementNS(ns, "line");
    const y80 = h - 0.8 * (h - 10);
    Object.entries({ x1: pad, x2: w, y1: y80, y2: y80, class: "target" }).forEach(([k, v]) => line.setAttribute(k, v));
    svg.append(line);
    data.days.forEach((d, i) => {
      const v = d.service_level === null ? 0 : d.service_level;
      const rect = document.createElementNS(ns, "rect");
      Object.entries({ x: pad + i * bw + 2, y: h - v * (h - 10), width: bw - 4, height: v * (h - 10), class: v >= 0.8 ? "ok" : "ko" }).forEach(([k, val]) => rect.setAttribute(k, val));
      const title = document.createElementNS(ns, "title");
      title.textContent = `${d.day} : ${pct(d.service_level)}`;
      rect.append(title);
      const label = document.createElementNS(ns, "text");
      Object.entries({ x: pad + i * bw + bw / 2, y: h + 14, "text-anchor": "middle" }).forEach(([k, val]) => label.setAttribute(k, val));
      label.textContent = d.day.slice(8);
      svg.append(rect, label);
    });
    const axis = document.createElementNS(ns, "text");
    Object.entries({ x: 0, y: y80 + 4 }).forEach(([k, v]) => axis.setAttribute(k, v));
    axis.textContent = "80 %";
    svg.append(axis);
    document.getElementById("chart").replaceChildren(svg);
    const dead = await api("/console/api/dead-letters");
    document.getElementById("dead-count").textContent = `(${dead.count})`;
    const when = (ms) => new Date(ms).toLocaleString("fr-FR", { timeZone: "Europe/Paris" });
    document.querySelector("#dead tbody").replaceChildren(...(dead.items.length ? dead.items.map((d) => el("tr", {},
      el("td", {}, when(d.at_ms)), el("td", {}, d.stream === "in" ? "entrant" : "sortant"), el("td", {}, d.channel || "—"),
      el("td", {}, d.urn || "—"), el("td", {}, d.unreadable ? "illisible" : d.msg_id), el("td", { class: "error" }, d.error)))
      : [el("tr", {}, el("td", { colspan: "6" }, "Aucun."))]));
  }

  // Live ---------------------------------------------------------------------------------------
  function connect(onChange) {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/console/ws`);
    const live = document.getElementById("live");
    let keepAlive = null;
    let pending = null;
    ws.onopen = () => { live.classList.replace("off", "on"); keepAlive = setInterval(() => ws.send("ping"), 30000); onChange(); };
    ws.onmessage = () => { clearTimeout(pending); pending = setTimeout(onChange, 100); };
    ws.onclose = () => { live.classList.replace("on", "off"); clearInterval(keepAlive); setTimeout(() => connect(onChange), 2000); };
  }

  document.getElementById("logout").addEventListener("click", async () => {
    await api("/console/logout", {}).catch(() => {});
    location.href = "/console/login";
  });

  if (document.body.classList.contains("console")) {
    api("/console/api/canned").then((c) => { canned = c; });
    document.getElementById("take-next").addEventListener("click", async () => {
      const conv = await api("/console/api/take-next", {});
      current = conv.id;
      await refresh();
    });
    setInterval(tickTimers, 1000);
    connect(() => { refresh(); loadComplaints(); });
  } else if (document.body.classList.contains("supervisor")) {
    connect(dashboard);
    setInterval(dashboard, 30000);
  }
})();
