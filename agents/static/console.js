// Agents' console and supervisor's dashboard. Everything the member or an agent wrote is put in
// the page with textContent (never as HTML). Live: a WebSocket says what changed; the page then
// asks the JSON API. POSTs carry the session's CSRF token.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const CHANNELS = { sms: "SMS", whatsapp: "WhatsApp", telegram: "Telegram", email: "E-mail", webchat: "Chat web", callback: "Rappel", phone: "Téléphone", voice: "Appel" };
  const STATUS = { queued: "en file", sending: "envoi", sent: "envoyé", delivered: "reçu", read: "lu", failed: "échec", undelivered: "non distribué", canceled: "annulé" };
  let state = null;
  let current = null; // conversation id shown in the detail pane
  let currentCallback = null; // callback id shown in the detail pane (agents' callbacks, below)
  let rappelsShown = false; // the « Rappels » view is in the detail pane
  let canned = [];
  const drafts = { reply: new Map(), note: new Map() }; // kept across live re-renders
  const REASONS = { ask_human: "demande un conseiller", complaint: "réclamation déposée", verification_failed: "identité non vérifiée", misunderstood: "incompris deux fois", callback: "demande de rappel", unproven_sender: "expéditeur non vérifié" };
  const CLAIM = { received: "reçue", in_progress: "en cours", paid: "payée", rejected: "refusée" };
  const COMPLAINT = { open: "en cours", answered: "répondue", closed: "close" };
  const CONV_STATUS = { open: "avec l'assistant", handoff: "en attente d'un conseiller", assigned: "prise par un conseiller", closed: "clôturée" };
  const seen = { queue: null, messages: new Map() }; // what was already on screen: only news is announced
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

  function showEmpty(text, focus) {
    const pane = document.getElementById("detail");
    delete pane.dataset.layout;
    const p = el("p", { class: "empty", tabindex: "-1" }, text);
    pane.replaceChildren(p);
    if (focus) p.focus();
  }

  // Screen readers: one polite live region says what arrived; history and re-renders stay silent.
  function announce(text) {
    const box = document.getElementById("announce");
    if (!box) return;
    box.textContent = "";
    setTimeout(() => { box.textContent = text; }, 50);
  }

  // A live re-render replaces a list: the keyboard focus goes back to the same control.
  function keepFocus(container, render) {
    const active = document.activeElement;
    const key = active && container.contains(active) ? active.dataset.key : null;
    render();
    if (key) {
      const again = container.querySelector(`[data-key="${CSS.escape(key)}"]`);
      if (again) again.focus();
    }
  }

  // An accessible confirmation: a modal <dialog> (focus kept inside, Escape cancels), focus back
  // to the button that asked. Resolves true only on the confirming button.
  function confirmAction(question, yes) {
    return new Promise((resolve) => {
      const opener = document.activeElement;
      const no = el("button", { type: "button", id: "confirm-no", class: "secondary" }, "Annuler");
      const ok = el("button", { type: "button", id: "confirm-yes" }, yes);
      const dialog = el("dialog", { id: "confirm", "aria-labelledby": "confirm-title" },
        el("h2", { id: "confirm-title" }, question),
        el("div", { class: "dialog-actions" }, no, ok));
      let answer = false;
      no.addEventListener("click", () => dialog.close());
      ok.addEventListener("click", () => { answer = true; dialog.close(); });
      dialog.addEventListener("close", () => {
        dialog.remove();
        if (opener && opener.isConnected) opener.focus();
        resolve(answer);
      });
      document.body.append(dialog);
      dialog.showModal();
      no.focus();
    });
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
    if (!resp.ok) {
      if (data.error === "no_phone") noPhone(data.detail);
      else toast(data.detail || "Action refusée.");
      const err = new Error(data.detail || resp.status);
      err.code = data.error;
      throw err;
    }
    return data;
  }

  // No phone in the agent's profile (« Prendre l'appel », « Appeler »): said in the detail pane, where it
  // stays, with the link to « Mon profil »; the keyboard focus goes to that link.
  function noPhone(detail) {
    const pane = document.getElementById("detail");
    delete pane.dataset.layout;
    current = null;
    currentCallback = null;
    rappelsShown = false;
    const link = el("a", { href: "/console/profile", id: "no-phone-link" }, "Ajouter mon numéro dans « Mon profil »");
    pane.replaceChildren(el("div", { class: "notice-phone", id: "no-phone", role: "alert" },
      el("p", {}, detail || "Aucun numéro de téléphone dans votre profil."), el("p", {}, link)));
    link.focus();
  }

  function waited(ms) {
    const s = Math.max(0, Math.floor((Date.now() - ms) / 1000));
    return s < 60 ? `${s} s` : s < 3600 ? `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")}` : `${Math.floor(s / 3600)} h ${String(Math.floor(s / 60) % 60).padStart(2, "0")}`;
  }

  // Minutes only: the text of a focused button changes at most once a minute.
  function heldFor(ms) {
    const min = Math.max(0, Math.floor((Date.now() - ms) / 60000));
    return min < 1 ? "prise à l'instant" : min < 60 ? `prise il y a ${min} min` : `prise il y a ${Math.floor(min / 60)} h ${String(min % 60).padStart(2, "0")}`;
  }

  function time(ms) {
    return ms ? new Date(Number(ms)).toLocaleString("fr-FR", { dateStyle: "short", timeStyle: "short" }) : "";
  }

  // Console -----------------------------------------------------------------------------------
  // Live refreshes overlap: only the latest answer is shown (an older one never brings back a
  // conversation the agent has just left).
  let refreshSeq = 0;
  let openSeq = 0;
  let focusPending = false; // the agent asked to go to a conversation: its title gets the focus once shown

  async function refresh() {
    const ticket = ++refreshSeq;
    const fresh = await api("/console/api/state");
    if (ticket !== refreshSeq) return;
    state = fresh;
    renderQueue();
    renderMine();
    renderMyCallbacks();
    if (current) await openConversation(current, false);
    else if (currentCallback) await openCallback(currentCallback, false);
    else if (rappelsShown) await showRappels(false);
  }

  function renderQueue() {
    const list = document.getElementById("queue");
    keepFocus(list, () => fillQueue(list));
    const ids = new Set(state.queue.map((i) => i.id));
    if (seen.queue) {
      const fresh = state.queue.filter((i) => !seen.queue.has(i.id));
      if (fresh.length === 1) announce(`Nouvelle demande en attente : ${CHANNELS[fresh[0].channel] || fresh[0].channel}, ${fresh[0].reason}.`);
      else if (fresh.length > 1) announce(`${fresh.length} nouvelles demandes en attente.`);
    }
    seen.queue = ids;
    tickTimers();
  }

  function fillQueue(list) {
    list.replaceChildren();
    document.getElementById("queue-count").textContent = String(state.queue.length);
    for (const item of state.queue) {
      if (item.kind === "callback") { list.append(callbackQueueItem(item)); continue; }
      const timer = el("span", { class: "timer", "data-since": item.since_ms }, waited(item.since_ms));
      const what = `${CHANNELS[item.channel] || item.channel}, ${item.reason}`;
      const row = el("li", { class: `item ${item.urgent ? "urgent" : ""}`, "data-id": item.id, "data-kind": item.kind });
      const labels = [
        el("span", { class: "chan" }, CHANNELS[item.channel] || item.channel), " ",
        el("span", { class: "skill" }, state.skills[item.skill] || item.skill), " ",
        item.urgent ? el("strong", { class: "flag" }, "URGENT ") : null,
        el("span", { class: "reason" }, item.reason),
        el("span", { class: "summary" }, item.summary)];
      row.append(el("button", { type: "button", class: "open", "data-key": `q:${item.id}:open`, onclick: () => openConversation(item.id, true, true) }, ...labels), timer,
        el("button", { type: "button", class: "take", "data-key": `q:${item.id}:take`, "aria-label": `Prendre : ${what}`, onclick: () => take(item.id) }, "Prendre"));
      if (item.channel === "voice" && state.calls_enabled) {  // a caller on the line (issue 22): ring the agent's phone
        row.append(el("button", { type: "button", class: "take-call", "data-key": `q:${item.id}:call`, "aria-label": `Prendre l'appel : ${what}`, onclick: () => takeCall(item.id) }, "Prendre l'appel"));
      }
      list.append(row);
    }
  }

  function renderMine() {
    const list = document.getElementById("mine");
    keepFocus(list, () => {
      list.replaceChildren();
      for (const conv of state.mine) {
        const here = conv.id === current;
        list.append(el("li", { class: `item mine ${here ? "current" : ""}`, "data-id": conv.id },
          el("button", { type: "button", class: "open", "data-key": `m:${conv.id}`, "aria-current": here ? "true" : null, onclick: () => openConversation(conv.id, true, true) },
            el("span", { class: "chan" }, CHANNELS[conv.channel] || conv.channel), " ",
            el("span", { class: "summary" }, conv.handoff_summary || REASONS[conv.handoff_reason] || "Conversation"),
            el("span", { class: "since", "data-since": conv.assigned_ms }, heldFor(conv.assigned_ms)))));
      }
      if (!state.mine.length) list.append(el("li", { class: "none" }, "Aucune conversation en cours."));
    });
  }

  function tickTimers() {
    const target = (state && state.pickup_target_s) || 60;
    for (const node of document.querySelectorAll("#queue .timer")) {
      const since = Number(node.dataset.since);
      const late = Date.now() - since > target * 1000;
      node.textContent = late ? `${waited(since)} · en retard` : waited(since);
      node.classList.toggle("late", late);
    }
    for (const node of document.querySelectorAll("#mine .since")) { const text = heldFor(Number(node.dataset.since)); if (node.textContent !== text) node.textContent = text; }
  }

  async function take(id) {
    await api(`/console/api/conversations/${encodeURIComponent(id)}/take`, {});
    current = id;
    focusPending = true;
    await refresh();
  }

  // « Prendre l'appel »: the conversation is the agent's and their phone rings; picking up bridges the caller.
  async function takeCall(id) {
    if (!state.me.has_phone) { noPhone("Aucun numéro de téléphone dans votre profil : ajoutez-le dans « Mon profil » pour prendre des appels."); return; }
    await api(`/console/api/calls/${encodeURIComponent(id)}/take`, {});
    current = id;
    focusPending = true;
    await refresh();
    toast("Votre téléphone sonne : décrochez pour parler à l'adhérent.");
  }

  // After taking or opening a conversation: the keyboard lands on its title, the history shows its end.
  function focusConversation() {
    const title = document.getElementById("conv-title");
    if (title) title.focus();
    const log = document.getElementById("messages");
    if (log) log.scrollTop = log.scrollHeight;
  }

  async function openConversation(id, scroll = true, focus = false) {
    const ticket = ++openSeq;
    current = id;
    if (focus) focusPending = true;
    let data;
    try {
      data = await api(`/console/api/conversations/${encodeURIComponent(id)}`);
    } catch (err) {
      if (ticket === openSeq && current === id) { current = null; showEmpty("Conversation inaccessible.", focusPending); focusPending = false; }
      return;
    }
    if (ticket !== openSeq) return; // a later request is on its way
    currentCallback = null;
    rappelsShown = false;
    renderDetail(data, scroll);
    renderMine();
    if (focusPending) { focusPending = false; focusConversation(); }
  }

  function speakerOf(m) {
    if (m.direction === "in") return "Adhérent";
    return m.speaker || "Assistant";
  }

  function renderDetail(data, scroll) {
    const conv = data.conversation;
    const mine = conv.status === "assigned" && conv.assigned_agent === state.me.login;
    const pane = document.getElementById("detail");
    const head = el("header", { class: "conv-head" },
      el("h2", { id: "conv-title", tabindex: "-1" }, `${CHANNELS[conv.channel] || conv.channel} · ${REASONS[conv.handoff_reason] || CONV_STATUS[conv.status] || conv.status}${conv.urgent ? " · URGENT" : ""}`),
      el("p", { class: "summary" }, conv.handoff_summary || ""),
      conv.sender_unproven ? el("p", { class: "unproven", id: "conv-unproven" }, el("strong", {}, "Expéditeur non vérifié"),
        " : le serveur de messagerie de la mutuelle n'a pas pu confirmer que ce courriel vient de l'adresse affichée (contrôle DMARC en échec). Elle a pu être usurpée : ne communiquez rien du dossier d'un adhérent sans avoir vérifié son identité par un autre moyen.") : null,
      el("p", { class: "status", id: "conv-status" }, conv.status === "assigned" ? (mine ? "Vous avez pris cette conversation." : `Prise par ${((state.agents || []).find((a) => a.login === conv.assigned_agent) || {}).speaker || conv.assigned_agent}`) : conv.status === "handoff" ? `En attente d'un conseiller depuis ${waited(conv.handoff_ms)}` : conv.status === "closed" ? "Clôturée" : "Avec l'assistant"));
    const log = el("ol", { class: "messages", id: "messages", tabindex: "0", "aria-label": "Messages de la conversation" });
    for (const m of data.messages) {
      const who = m.direction === "in" ? "member" : m.speaker ? "agent" : "bot";
      log.append(el("li", { class: `msg ${m.direction} ${who}`, "data-id": m.id },
        el("span", { class: "meta" }, el("strong", { class: "who" }, speakerOf(m)),
          ` · ${time(m.created_ms)}${m.direction === "out" && m.status ? " · " + (STATUS[m.status] || m.status) : ""}`),
        el("p", { class: "text" }, m.text),
        m.error ? el("p", { class: "delivery-error" }, el("strong", {}, "Non envoyé"), ` : ${m.error}.`) : null));
    }
    // Announce what the member wrote since the last look at this conversation (never the history).
    const known = seen.messages.get(conv.id);
    if (known) {
      for (const m of data.messages) {
        if (!known.has(m.id) && m.direction === "in") announce(`Nouveau message de l'adhérent : ${m.text}`);
      }
    }
    seen.messages.set(conv.id, new Set(data.messages.map((m) => m.id)));
    const notes = el("ol", { class: "notes" });
    for (const n of data.notes) notes.append(el("li", {}, el("span", { class: "meta" }, `${n.first_name} · ${time(n.at_ms)}`), el("p", {}, n.text)));
    const actions = el("div", { class: "actions" });
    const mineNow = conv.status === "assigned" && conv.assigned_agent === state.me.login;
    if (conv.channel === "voice" && conv.call_waiting && state.calls_enabled && (conv.status === "handoff" || mineNow)) {
      actions.append(el("button", { type: "button", id: "take-call-this", onclick: () => takeCall(conv.id) }, "Prendre l'appel"));
    }
    if (conv.status === "handoff") {
      actions.append(el("button", { type: "button", id: "take-this", onclick: () => take(conv.id) }, "Prendre cette conversation"));
      if (state.me.role === "supervisor") {
        const assign = el("select", { id: "assign" }, el("option", { value: "" }, "Choisir…"),
          ...state.agents.filter((a) => a.role === "agent").map((a) => el("option", { value: a.login }, `${a.first_name} (${a.login})`)));
        const doAssign = async () => {
          if (!assign.value) { toast("Choisissez un conseiller."); assign.focus(); return; }
          await api(`/console/api/conversations/${encodeURIComponent(conv.id)}/assign`, { to_agent: assign.value });
          toast("Conversation attribuée.");
          current = null;
          showEmpty("Conversation attribuée.", true);
          await refresh();
        };
        actions.append(el("span", { class: "field" }, el("label", { for: "assign" }, "Attribuer à"), assign,
          el("button", { type: "button", id: "assign-go", onclick: doAssign }, "Attribuer")));
      }
    }
    let replyBox = null;
    const phoneCall = conv.channel === "voice";  // the agent speaks to the member: nothing written reaches them
    if (mine && phoneCall) {
      replyBox = el("p", { class: "hint", id: "call-hint" }, "Appel téléphonique : vous parlez à l'adhérent au téléphone. Notez l'essentiel de l'échange dans les notes.");
    }
    if (mine) {
      // A canned answer is chosen, then inserted: browsing the list with the arrow keys changes nothing.
      const select = el("select", { id: "canned" }, el("option", { value: "" }, "Choisir…"), ...canned.map((c) => el("option", { value: c.id }, c.title)));
      const insert = () => {
        const c = canned.find((x) => x.id === select.value);
        if (!c) { toast("Choisissez une réponse type."); select.focus(); return; }
        const box = document.getElementById("reply-text");
        box.value = c.text;
        drafts.reply.set(conv.id, c.text);
        box.focus();
      };
      const text = el("textarea", { id: "reply-text", rows: "3", maxlength: "4000", placeholder: "Votre réponse à l'adhérent", oninput: (e) => drafts.reply.set(conv.id, e.target.value) });
      text.value = drafts.reply.get(conv.id) || "";
      if (!phoneCall) replyBox = el("form", { class: "reply", id: "reply-form", onsubmit: (e) => { e.preventDefault(); sendReply(conv.id); } },
        el("span", { class: "field canned" }, el("label", { for: "canned" }, "Réponses types"), select,
          el("button", { type: "button", id: "canned-insert", onclick: insert }, "Insérer")),
        el("label", { for: "reply-text" }, "Votre réponse"), el("span", { class: "field send" }, text, el("button", { type: "submit", id: "send" }, "Envoyer")));
      const transfer = el("select", { id: "transfer" }, el("option", { value: "" }, "Choisir…"),
        ...Object.entries(state.skills).map(([k, v]) => el("option", { value: `skill:${k}` }, `File ${v}`)),
        ...state.agents.filter((a) => a.login !== state.me.login).map((a) => el("option", { value: `agent:${a.login}` }, `${a.first_name} (${a.login})`)));
      const doTransfer = async () => {
        const [kind, value] = transfer.value.split(":");
        if (!value) { toast("Choisissez une file ou un conseiller."); transfer.focus(); return; }
        await api(`/console/api/conversations/${encodeURIComponent(conv.id)}/transfer`, kind === "skill" ? { to_skill: value } : { to_agent: value });
        toast("Conversation transférée.");
        current = null;
        showEmpty("Conversation transférée.", true);
        await refresh();
      };
      actions.append(el("span", { class: "field" }, el("label", { for: "transfer" }, "Transférer à"), transfer,
          el("button", { type: "button", id: "transfer-go", onclick: doTransfer }, "Transférer")),
        el("button", { type: "button", id: "give-back", onclick: () => act(conv.id, "bot", "Conversation rendue à l'assistant.") }, "Rendre à l'assistant"),
        el("button", { type: "button", id: "close", onclick: async () => {
          if (phoneCall ? await confirmAction("Clôturer cet appel ?", "Clôturer") : await confirmAction("Clôturer cette conversation ? L'adhérent recevra le questionnaire de satisfaction.", "Clôturer")) {
            await act(conv.id, "close", phoneCall ? "Appel clôturé." : "Conversation clôturée, questionnaire envoyé.");
          }
        } }, "Clôturer"));
    }
    const noteForm = el("form", { class: "note", onsubmit: async (e) => {
      e.preventDefault();
      const value = drafts.note.get(conv.id) || "";
      if (!value.trim()) return;
      await api(`/console/api/conversations/${encodeURIComponent(conv.id)}/note`, { text: value });
      drafts.note.delete(conv.id);
      await openConversation(conv.id, false);
    } }, el("label", { for: "note-text", class: "visually-hidden" }, "Note interne"),
    el("input", { id: "note-text", maxlength: "2000", placeholder: "Note interne (invisible pour l'adhérent)", oninput: (e) => drafts.note.set(conv.id, e.target.value) }), el("button", { type: "submit", id: "add-note" }, "Noter"));
    noteForm.querySelector("input").value = drafts.note.get(conv.id) || "";
    const fiche = renderFiche(data.member, data.past, Boolean(conv.verified_member), conv.id);
    const layout = `${conv.id}|${conv.status}|${mine}`;
    if (pane.dataset.layout === layout) {
      // Same conversation, same state: refresh what changed, never the fields the agent is typing in,
      // and keep the nodes that may hold the keyboard focus (the title, the history, the record).
      const oldLog = pane.querySelector("#messages");
      const atBottom = oldLog.scrollTop + oldLog.clientHeight >= oldLog.scrollHeight - 4;
      oldLog.replaceChildren(...log.childNodes);
      const oldHead = pane.querySelector(".conv-head");
      const title = head.querySelector("#conv-title");
      oldHead.querySelector("#conv-title").textContent = title.textContent;
      title.remove();
      oldHead.replaceChildren(oldHead.querySelector("#conv-title"), ...head.childNodes);
      pane.querySelector(".notes").replaceWith(notes);
      pane.querySelector("#fiche").replaceChildren(...fiche.childNodes);
      if (atBottom || scroll) oldLog.scrollTop = oldLog.scrollHeight;
      return;
    }
    pane.dataset.layout = layout;
    // A rebuild while the agent types (the conversation changed state) keeps the field they were in, and the caret.
    const typing = document.activeElement && pane.contains(document.activeElement) && ["reply-text", "note-text"].includes(document.activeElement.id)
      ? { id: document.activeElement.id, start: document.activeElement.selectionStart, end: document.activeElement.selectionEnd } : null;
    pane.replaceChildren(el("div", { class: "conv" }, head, log, replyBox, actions, el("h3", {}, "Notes internes"), notes, noteForm), fiche);
    const field = typing && document.getElementById(typing.id);
    if (field) { field.focus(); field.setSelectionRange(typing.start, typing.end); }
    log.scrollTop = log.scrollHeight; // a conversation opens on its last message
  }

  function renderFiche(record, past, verified, convId) {
    const box = el("aside", { class: "fiche", id: "fiche", tabindex: "0", "aria-labelledby": "fiche-title" }, el("h3", { id: "fiche-title" }, "Fiche adhérent"));
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
      // Accounts the member chose to have recognised (a Telegram chat): an agent may undo the link.
      const linked = record.linked_accounts || [];
      if (linked.length) {
        box.append(el("h4", {}, "Comptes reconnus"), el("ul", { class: "linked" }, ...linked.map((a) => el("li", {},
          `${CHANNELS[a.channel] || a.channel}, relié le ${time(a.linked_ms)} `,
          convId ? el("button", { type: "button", class: "unlink", "data-key": `u:${a.contact}`, "aria-label": `Ne plus reconnaître ce compte ${CHANNELS[a.channel] || a.channel}`, onclick: async () => {
            if (!await confirmAction(`Ne plus reconnaître ce compte ${CHANNELS[a.channel] || a.channel} ? L'adhérent devra de nouveau donner son numéro d'adhérent et un code.`, "Ne plus reconnaître")) return;
            await api(`/console/api/conversations/${encodeURIComponent(convId)}/unlink`, { contact: a.contact });
            toast("Ce compte n'est plus reconnu.");
            await openConversation(convId, false);
          } }, "Ne plus reconnaître") : null))));
      }
    }
    if (past && past.length) {
      box.append(el("h4", {}, "Autres conversations"), el("ul", {}, ...past.map((p) => el("li", {}, `${CHANNELS[p.channel] || p.channel} · ${time(p.created_ms)} · ${CONV_STATUS[p.status] || p.status} · ${p.messages} message(s)`))));
    }
    return box;
  }

  async function sendReply(id) {
    const text = document.getElementById("reply-text");
    // The draft is the truth: the box may have been rebuilt by a live refresh since the agent typed.
    const value = (text && text.value.trim() ? text.value : drafts.reply.get(id)) || "";
    if (!value.trim()) { toast("La réponse est vide."); if (text) text.focus(); return; }
    const clientId = (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random().toString(16).slice(2)).replaceAll("-", "");
    await api(`/console/api/conversations/${encodeURIComponent(id)}/reply`, { text: value, client_id: clientId });
    if (text) text.value = "";
    drafts.reply.delete(id);
    await openConversation(id);
    const again = document.getElementById("reply-text");
    if (again) again.focus();
  }

  async function act(id, action, done) {
    await api(`/console/api/conversations/${encodeURIComponent(id)}/${action}`, {});
    toast(done);
    current = null;
    showEmpty(done, true);
    await refresh();
  }

  async function loadComplaints() {
    const list = document.getElementById("complaints");
    if (!list) return;
    const rows = await api("/console/api/complaints");
    const late = (c) => c.overdue ? el("strong", { class: "overdue-flag" }, `En retard de ${c.days_late} jour${c.days_late > 1 ? "s" : ""}`) : null;
    keepFocus(list, () => list.replaceChildren(...rows.slice(0, 30).map((c) => el("li", { class: `item ${c.urgent ? "urgent" : ""} ${c.overdue ? "overdue" : ""}`, "data-id": c.id },
      late(c),
      el("span", { class: "ref" }, `${c.id} · échéance ${frDate(c.due_date)}${c.urgent ? " · urgente" : ""}`),
      el("span", { class: "summary" }, c.subject),
      el("button", { type: "button", class: "answered", "data-key": `c:${c.id}`, "aria-label": `Répondue : réclamation ${c.id}`, onclick: async () => {
        if (!await confirmAction(`Marquer la réclamation ${c.id} comme répondue ? La date de réponse sera enregistrée.`, "Marquer répondue")) return;
        await api(`/console/api/complaints/${encodeURIComponent(c.member)}/${encodeURIComponent(c.id)}`, { status: "answered" });
        toast("Réclamation marquée répondue.");
        loadComplaints();
      } }, "Répondue")))));
  }

  // Callbacks (issue 18): queue items, the callback's detail, taking it, its outcome, « Rappels » -----
  const CB_STATUS = { pending: "à rappeler", no_answer: "pas de réponse", in_progress: "en cours" };

  function frPhone(e164) {
    return /^\+33\d{9}$/.test(e164) ? ("0" + e164.slice(3)).replace(/(\d{2})(?=\d)/g, "$1 ") : e164;
  }

  function telLink(phone, attrs) {
    return el("a", { href: `tel:${phone}`, class: "tel", ...(attrs || {}) }, frPhone(phone));
  }

  function frTime(ms) {
    return new Date(Number(ms)).toLocaleTimeString("fr-FR", { timeZone: "Europe/Paris", hour: "2-digit", minute: "2-digit" }).replace(":", " h ");
  }

  function frDay(iso) {
    return iso ? new Date(iso).toLocaleDateString("fr-FR", { timeZone: "Europe/Paris", weekday: "long", day: "2-digit", month: "2-digit" }) : "";
  }

  function callbackStatus(cb) {
    if (cb.status === "in_progress") return cb.held_by === state.me.login ? "Vous avez pris ce rappel." : `Pris par ${cb.held_by}`;
    const tries = cb.attempts ? ` (${cb.attempts} essai${cb.attempts > 1 ? "s" : ""} sans réponse)` : "";
    return `${CB_STATUS[cb.status] || cb.status}${tries}`;
  }

  function callbackQueueItem(item) {
    const cb = item.callback;
    return el("li", { class: "item callback", "data-id": item.id, "data-kind": "callback" },
      el("span", { class: "chan" }, CHANNELS.phone),
      el("span", { class: "skill" }, state.skills[item.skill] || item.skill),
      el("span", { class: "timer", "data-since": item.since_ms }, waited(item.since_ms)),
      el("div", { class: "cb-name" }, cb.name),
      el("div", {}, telLink(cb.phone)),
      el("div", { class: "reason" }, `${cb.subject} · ${item.summary}`),
      cb.comment ? el("div", { class: "summary" }, cb.comment) : null,
      el("div", { class: "cb-buttons" },
        el("button", { type: "button", class: "cb-open", onclick: () => openCallback(item.id, true) }, `Voir ${cb.ref || "le rappel"}`),
        el("button", { type: "button", class: "take cb-take", onclick: () => takeCallback(item.id) }, "Prendre")));
  }

  function renderMyCallbacks() {
    const list = document.getElementById("mine-callbacks");
    if (!list) return;
    list.replaceChildren(...(state.callbacks_mine || []).map((cb) => el("li", { class: `item callback ${cb.id === currentCallback ? "current" : ""}`, "data-id": cb.id },
      el("div", { class: "cb-name" }, cb.name), el("div", {}, telLink(cb.phone)),
      el("button", { type: "button", class: "cb-open", onclick: () => openCallback(cb.id, true) }, `Voir ${cb.ref || "le rappel"}`))));
  }

  async function takeCallback(id) {
    const taken = await api(`/console/api/callbacks/${encodeURIComponent(id)}/take`, {});
    await tookCallback(taken);
  }

  async function tookCallback(taken) {
    toast(`Rappel pris : appelez le ${frPhone(taken.phone)}.`);
    current = null;
    currentCallback = taken.id;
    await refresh();
    focusDetail();
  }

  function focusDetail() {
    const heading = document.querySelector("#detail h2");
    if (heading) heading.focus();
  }

  async function openCallback(id, userAction) {
    let data;
    try {
      data = await api(`/console/api/callbacks/${encodeURIComponent(id)}`);
    } catch (err) {
      if (currentCallback === id) { currentCallback = null; showEmpty("Rappel inaccessible."); }
      return;
    }
    current = null;
    rappelsShown = false;
    currentCallback = id;
    renderCallbackDetail(data);
    renderMyCallbacks();
    if (userAction) focusDetail();
  }

  function renderCallbackDetail(data) {
    const cb = data.callback;
    const pane = document.getElementById("detail");
    const mine = cb.status === "in_progress" && (cb.held_by === state.me.login || state.me.role === "supervisor");
    const facts = el("dl", { class: "cb-facts" },
      el("dt", {}, "Numéro"), el("dd", {}, telLink(cb.phone, { id: "cb-phone" })),
      el("dt", {}, "Objet"), el("dd", {}, cb.subject),
      el("dt", {}, "Précisions"), el("dd", { class: "cb-comment" }, cb.comment || "—"),
      el("dt", {}, "Créneau"), el("dd", {}, `${frDay(cb.slot_start)}, ${cb.slot}`),
      el("dt", {}, "À rappeler"), el("dd", { id: "cb-due", "data-due-ms": cb.due_ms }, cb.due_ms ? `${frDay(new Date(cb.due_ms).toISOString())} à partir de ${frTime(cb.due_ms)}` : "—"),
      el("dt", {}, "Référence"), el("dd", {}, cb.ref || cb.id));
    const actions = el("div", { class: "actions" });
    if (cb.status === "pending" || cb.status === "no_answer") {
      actions.append(el("button", { type: "button", id: "cb-take", onclick: () => takeCallback(cb.id) }, "Prendre ce rappel"));
    }
    if (mine && state.calls_enabled && state.me.has_phone) {
      actions.append(el("button", { type: "button", id: "cb-call", onclick: () => callMember(cb.id) }, "Appeler"));
    } else if (mine && state.calls_enabled) {
      actions.append(el("p", { class: "hint", id: "cb-no-phone" }, "Pour appeler depuis la console, ",
        el("a", { href: "/console/profile" }, "ajoutez votre numéro dans « Mon profil »"), "."));
    }
    if (mine) {
      for (const [outcome, label, idName] of [["done", "Rappel effectué", "cb-done"], ["no_answer", "Pas de réponse", "cb-no-answer"], ["wrong_number", "Mauvais numéro", "cb-wrong-number"]]) {
        actions.append(el("button", { type: "button", id: idName, onclick: () => callbackOutcome(cb.id, outcome) }, label));
      }
    }
    const fiche = renderFiche(data.member, data.past, false);
    fiche.setAttribute("aria-label", "Fiche adhérent"); // two <aside> landmarks on the page: each named
    delete pane.dataset.layout;
    pane.replaceChildren(
      el("div", { class: "conv callback-detail" },
        el("header", { class: "conv-head" },
          el("h2", { tabindex: "-1" }, `Rappel · ${cb.name}`),
          el("p", { class: "status", id: "cb-status" }, callbackStatus(cb))),
        facts, actions),
      fiche);
  }

  // « Appeler »: the agent's phone rings, then the member's; the outcome comes from the call itself.
  async function callMember(id) {
    await api(`/console/api/callbacks/${encodeURIComponent(id)}/call`, {});
    toast("Votre téléphone sonne, puis celui de l'adhérent : l'issue de l'appel sera enregistrée d'elle-même.");
    await refresh();
  }

  async function callbackOutcome(id, outcome) {
    await api(`/console/api/callbacks/${encodeURIComponent(id)}/outcome`, { outcome });
    const back = outcome === "no_answer";  // due again later; done or a wrong number leave the agent's hands
    if (!back && currentCallback === id) { currentCallback = null; showEmpty("Rappel traité.", true); }
    await refresh();
    toast(back ? "Rappel enregistré : pas de réponse, il reviendra dans 30 minutes." : "Rappel enregistré.");
    if (currentCallback === id) focusDetail();
  }

  async function showRappels(userAction) {
    const data = await api("/console/api/callbacks?days=7");
    current = null;
    currentCallback = null;
    rappelsShown = true;
    const pane = document.getElementById("detail");
    delete pane.dataset.layout;
    const view = el("section", { class: "rappels", "aria-labelledby": "rappels-title" },
      el("h2", { id: "rappels-title", tabindex: "-1" }, "Rappels"),
      el("p", { class: "hint" }, "Les rappels d'aujourd'hui et des jours qui viennent, par créneau."));
    for (const day of data.days) {
      view.append(el("h3", {}, `${day.label} — ${day.count} rappel${day.count > 1 ? "s" : ""}${day.closed ? ` (${day.closed})` : ""}`));
      if (!day.slots.length) { view.append(el("p", { class: "empty" }, "Aucun rappel.")); continue; }
      for (const slot of day.slots) {
        view.append(el("h4", {}, slot.label), el("ul", { class: "rappels-list" }, ...slot.callbacks.map((cb) => el("li", { class: "rappel", "data-id": cb.id },
          el("strong", { class: "cb-name" }, cb.name), " · ", telLink(cb.phone), " · ", cb.subject,
          el("span", { class: "cb-state" }, ` · ${callbackStatus(cb)}${cb.status === "no_answer" ? ` · à rappeler à partir de ${frTime(cb.due_ms)}` : ""}`),
          " ", el("button", { type: "button", class: "cb-open", onclick: () => openCallback(cb.id, true) }, `Voir ${cb.ref || "le rappel"}`)))));
      }
    }
    pane.replaceChildren(view);
    if (userAction) focusDetail();
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
      ...Object.entries(now.waiting_by_skill).map(([k, v]) => el("div", { class: "kpi small" }, el("span", {}, `En attente, ${(data.skills || {})[k] || k}`), el("strong", {}, String(v)))));
    const body = document.querySelector("#days tbody");
    body.replaceChildren(...data.days.slice().reverse().map((d) => el("tr", {},
      el("td", {}, el("time", { datetime: d.day }, frDate(d.day))), el("td", {}, d.conversations || 0), el("td", {}, d.handoffs || 0), el("td", {}, d.queue_peak || 0),
      el("td", {}, d.agents || 0), el("td", {}, d.picked || 0),
      el("td", {}, pct(d.service_level)), el("td", {}, pct(d.answer_rate)), el("td", {}, pct(d.complaints_in_time_rate)),
      el("td", {}, d.csat === null ? "—" : String(d.csat).replace(".", ",")), el("td", {}, d.nps === null ? "—" : String(d.nps)),
      el("td", {}, pct(d.containment)))));
    // Status questions beside containment: those after a message sent first, those on a record changed without one.
    const statusBody = document.querySelector("#status-days tbody");
    if (statusBody) {
      statusBody.replaceChildren(...data.days.slice().reverse().map((d) => el("tr", {},
        el("th", { scope: "row" }, el("time", { datetime: d.day }, frDate(d.day))), el("td", {}, d.status_questions || 0),
        el("td", {}, d.status_after_notice || 0), el("td", {}, d.status_changed_untold || 0), el("td", {}, d.detail_answers || 0),
        el("td", {}, pct(d.containment)))));
    }
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
      title.textContent = `${frDate(d.day)} : ${pct(d.service_level)}`;
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
    renderCalls(data);
    const dead = await api("/console/api/dead-letters");
    document.getElementById("dead-count").textContent = `(${dead.count})`;
    const when = (ms) => new Date(ms).toLocaleString("fr-FR", { timeZone: "Europe/Paris" });
    document.querySelector("#dead tbody").replaceChildren(...(dead.items.length ? dead.items.map((d) => el("tr", {},
      el("td", {}, when(d.at_ms)), el("td", {}, d.stream === "in" ? "entrant" : "sortant"), el("td", {}, CHANNELS[d.channel] || d.channel || "—"),
      el("td", {}, d.urn || "—"), el("td", {}, d.unreadable ? "illisible" : d.msg_id), el("td", { class: "error" }, d.error)))
      : [el("tr", {}, el("td", { colspan: "6" }, "Aucun."))]));
    const hooks = dead.webhooks || { count: 0, items: [] };
    document.getElementById("webhook-dead-count").textContent = `(${hooks.count})`;
    document.querySelector("#webhook-dead tbody").replaceChildren(...(hooks.items.length ? hooks.items.map((d) => el("tr", {},
      el("td", {}, when(d.at_ms)), el("td", {}, d.type || "—"), el("td", {}, d.event_id), el("td", {}, d.url),
      el("td", {}, String(d.attempts)), el("td", { class: "error" }, d.error)))
      : [el("tr", {}, el("td", { colspan: "6" }, "Aucun."))]));
  }

  // Calls (issue 22): per day and skill, the answer rate and the 60-second service level against the targets.
  function seconds(v) { return v === null || v === undefined ? "—" : (v >= 60 ? `${Math.floor(v / 60)} min ${String(v % 60).padStart(2, "0")} s` : `${v} s`); }

  function renderCalls(data) {
    const section = document.getElementById("calls-section");
    if (!section || !data.calls_enabled) return;
    section.hidden = false;
    const rows = [];
    for (const d of data.days.slice().reverse()) {
      const groups = [["all", "Toutes"], ...Object.entries(data.skills || {})];
      for (const [key, label] of groups) {
        const c = d.calls[key];
        if (key !== "all" && !c.offered) continue;
        rows.push(el("tr", { "data-day": d.day, "data-skill": key },
          el("td", {}, el("time", { datetime: d.day }, frDate(d.day))), el("td", {}, label),
          el("td", { class: "offered" }, String(c.offered)), el("td", { class: "answered" }, String(c.answered)),
          el("td", { class: "abandoned" }, String(c.abandoned)), el("td", { class: "answered-60" }, String(c.answered_60)),
          el("td", {}, pct(c.answer_rate)), el("td", {}, pct(c.answered_60_rate)),
          el("td", {}, seconds(c.avg_wait_s)), el("td", {}, seconds(c.avg_talk_s))));
      }
    }
    document.querySelector("#calls tbody").replaceChildren(...rows);
    const ns = "http://www.w3.org/2000/svg";
    const w = 700, h = 200, pad = 28, bw = (w - pad) / data.days.length;
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${w} ${h + 20}`);
    const targets = data.call_targets || { answer_rate: 0.9, answered_60_rate: 0.81 };
    for (const [value, name] of [[targets.answer_rate, "décrochés"], [targets.answered_60_rate, "en 60 s"]]) {
      const y = h - value * (h - 10);
      const line = document.createElementNS(ns, "line");
      Object.entries({ x1: pad, x2: w, y1: y, y2: y, class: "target" }).forEach(([k, v]) => line.setAttribute(k, v));
      const text = document.createElementNS(ns, "text");
      Object.entries({ x: 0, y: y + 4 }).forEach(([k, v]) => text.setAttribute(k, v));
      text.textContent = `${Math.round(value * 100)} %`;
      const title = document.createElementNS(ns, "title");
      title.textContent = `Objectif ${name} : ${Math.round(value * 100)} %`;
      line.append(title);
      svg.append(line, text);
    }
    data.days.forEach((d, i) => {
      const c = d.calls.all;
      [[c.answer_rate, targets.answer_rate, "décrochés"], [c.answered_60_rate, targets.answered_60_rate, "décrochés en 60 s"]].forEach(([rate, target, name], j) => {
        const v = rate === null ? 0 : rate;
        const rect = document.createElementNS(ns, "rect");
        Object.entries({ x: pad + i * bw + 2 + j * (bw - 4) / 2, y: h - v * (h - 10), width: (bw - 4) / 2, height: v * (h - 10), class: v >= target ? "ok" : "ko" }).forEach(([k, val]) => rect.setAttribute(k, val));
        const title = document.createElementNS(ns, "title");
        title.textContent = `${frDate(d.day)}, ${name} : ${pct(rate)}`;
        rect.append(title);
        svg.append(rect);
      });
    });
    document.getElementById("calls-chart").replaceChildren(svg);
  }

  // Live ---------------------------------------------------------------------------------------
  function connect(onChange) {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/console/ws`);
    const live = document.getElementById("live");
    let keepAlive = null;
    let pending = null;
    const say = (text) => { const words = live.querySelector(".live-text"); if (words) words.textContent = text; };
    ws.onopen = () => { live.classList.replace("off", "on"); say("En direct"); keepAlive = setInterval(() => ws.send("ping"), 30000); onChange(); };
    ws.onmessage = () => { clearTimeout(pending); pending = setTimeout(onChange, 100); };
    ws.onclose = () => { live.classList.replace("on", "off"); say("Reconnexion…"); clearInterval(keepAlive); setTimeout(() => connect(onChange), 2000); };
  }

  document.getElementById("logout").addEventListener("click", async () => {
    await api("/console/logout", {}).catch(() => {});
    location.href = "/console/login";
  });

  if (document.body.classList.contains("console")) {
    api("/console/api/canned").then((c) => { canned = c; });
    document.getElementById("take-next").addEventListener("click", async () => {
      const taken = await api("/console/api/take-next", {});
      if (taken.kind === "callback") { await tookCallback(taken); return; }
      current = taken.id;
      focusPending = true;
      await refresh();
    });
    document.getElementById("show-rappels").addEventListener("click", () => showRappels(true));
    setInterval(tickTimers, 1000);
    connect(() => { refresh(); loadComplaints(); });
  } else if (document.body.classList.contains("supervisor")) {
    connect(dashboard);
    setInterval(dashboard, 30000);
  }
})();
