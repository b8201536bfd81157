// Campaign console: create a draft, count its audience, preview it, schedule it, follow it live
// (progress bar and chart), pause/resume/cancel, download the proof of notice. Text is always set
// with textContent; POSTs carry the CSRF token.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const STATES = { draft: "brouillon", scheduled: "programmée", sending: "en cours", paused: "en pause", done: "terminée", cancelled: "annulée" };
  const STATUS = { planned: "prévues", queued: "en file", sending: "en envoi", sent: "envoyées", delivered: "reçues", read: "lues", failed: "échecs", undelivered: "non distribuées", postal: "courrier" };
  let current = null;
  let timer = null;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v !== undefined && v !== null) node.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }
  function toast(text) {
    const box = document.getElementById("toast");
    box.textContent = text; box.hidden = false;
    clearTimeout(toast.t); toast.t = setTimeout(() => { box.hidden = true; }, 6000);
  }
  async function api(path, body) {
    const init = body === undefined ? { credentials: "same-origin" }
      : { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body) };
    const resp = await fetch(path, init);
    if (resp.status === 401) { location.href = "/console/login"; throw new Error("login"); }
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      const msg = data.fields ? Object.values(data.fields).join(" ") : (data.detail || "Refusé.");
      const err = new Error(msg); err.fields = data.fields; throw err;
    }
    return data;
  }

  async function upload(path, file) {
    const resp = await fetch(path, { method: "POST", credentials: "same-origin", headers: { "Content-Type": "text/csv", "X-CSRF-Token": csrf }, body: file });
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(data.fields ? Object.values(data.fields).join(" ") : (data.detail || "Refusé."));
    return data;
  }

  async function loadList() {
    const rows = await api("/console/api/campaigns");
    document.getElementById("list").replaceChildren(...rows.map((c) => el("li", { class: `item ${c.id === current ? "current" : ""}`, "data-id": c.id, onclick: () => open(c.id) },
      el("strong", {}, c.title), el("div", { class: "summary" }, `${c.kind_label} · ${STATES[c.state] || c.state}${c.planned ? ` · ${c.planned} adhérents` : ""}`))));
  }

  function values(text) {
    const out = {};
    for (const line of text.split("\n")) {
      const i = line.indexOf("=");
      if (i > 0) out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
    }
    return out;
  }

  document.getElementById("new").addEventListener("click", () => {
    document.getElementById("create").hidden = false;
    document.getElementById("detail").replaceChildren();
  });

  document.getElementById("create").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = e.target;
    const fd = new FormData(f);
    const body = {
      kind: fd.get("kind"), title: fd.get("title"),
      effective_date: fd.get("when") === "fixed" ? fd.get("effective_date") : "",
      date_field: fd.get("when") === "member" ? "contribution_call_date" : "",
      audience: {
        cover_levels: fd.getAll("cover_levels"), segments: fd.getAll("segments"),
        regions: String(fd.get("regions") || "").split(",").map((s) => s.trim()).filter(Boolean),
        age_min: fd.get("age_min") || null, age_max: fd.get("age_max") || null,
        members: String(fd.get("members") || "").split(/\s+/).filter(Boolean),
      },
      channels: String(fd.get("channels")).split(","),
      values: values(String(fd.get("values") || "")),
      window: { start: fd.get("start"), end: fd.get("end") },
    };
    const errors = document.getElementById("create-errors");
    const file = fd.get("list");
    try {
      const c = await api("/console/api/campaigns", body);
      if (file && file.size) {
        try {
          const r = await upload(`/console/api/campaigns/${c.id}/audience`, file);
          toast(`Liste importée : ${r.members} adhérents` + (r.unknown ? `, dont ${r.unknown} inconnus à ce jour` : "")
            + (r.bad_count ? ` ; ${r.bad_count} ligne(s) ignorée(s) (ligne ${r.bad_lines.join(", ")})` : "") + ".");
        } catch (err) {
          await api(`/console/api/campaigns/${c.id}/cancel`, {});  // never a draft aimed at everyone by mistake
          throw new Error(`La liste n'a pas pu être importée : ${err.message} Le brouillon a été annulé.`);
        }
      } else {
        toast("Brouillon créé.");
      }
      errors.hidden = true;
      f.hidden = true;
      await loadList();
      await open(c.id);
    } catch (err) {
      errors.textContent = err.message; errors.hidden = false;
    }
  });

  function bar(value) {
    const fill = el("span");
    fill.style.width = `${Math.round(value * 100)}%`;  // through CSSOM: a style attribute breaks the CSP
    return el("div", { class: "progress", role: "progressbar", "aria-valuenow": Math.round(value * 100), "aria-valuemin": "0", "aria-valuemax": "100" },
      fill, el("em", {}, `${Math.round(value * 100)} %`));
  }

  function chart(byStatus) {
    const ns = "http://www.w3.org/2000/svg";
    const entries = Object.entries(byStatus);
    const max = Math.max(1, ...entries.map(([, n]) => n));
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 420 ${30 * entries.length + 10}`);
    entries.forEach(([status, n], i) => {
      const label = document.createElementNS(ns, "text");
      label.setAttribute("x", "0"); label.setAttribute("y", String(30 * i + 20));
      label.textContent = STATUS[status] || status;
      const rect = document.createElementNS(ns, "rect");
      Object.entries({ x: 110, y: 30 * i + 6, height: 18, width: Math.max(2, (n / max) * 250), class: `st-${status}` }).forEach(([k, v]) => rect.setAttribute(k, v));
      const count = document.createElementNS(ns, "text");
      count.setAttribute("x", String(115 + (n / max) * 250)); count.setAttribute("y", String(30 * i + 20));
      count.textContent = String(n);
      svg.append(label, rect, count);
    });
    return el("div", { class: "chart", role: "img", "aria-label": "Notices par statut" }, svg);
  }

  async function open(id) {
    current = id;
    clearTimeout(timer);
    document.getElementById("create").hidden = true;
    const r = await api(`/console/api/campaigns/${encodeURIComponent(id)}`);
    const c = r.campaign;
    const pane = document.getElementById("detail");
    const extra = pane.querySelector("#extra");
    const actions = el("div", { class: "actions" });
    const act = async (name, label, body) => {
      try { const out = await api(`/console/api/campaigns/${encodeURIComponent(id)}/${name}`, body || {}); toast(label); return out; }
      catch (err) { toast(err.message); throw err; }
    };
    if (c.state === "draft") {
      const start = el("input", { type: "datetime-local", id: "start-at" });
      actions.append(
        el("button", { type: "button", id: "count", onclick: async () => {
          const n = await act("count", "Audience comptée.");
          document.getElementById("extra").replaceChildren(el("p", { id: "count-result" }, `${n.total} adhérents : ` + Object.entries(n.by_channel).map(([k, v]) => `${k === "none" ? "aucun canal (courrier)" : k} ${v}`).join(", ")));
        } }, "Compter l'audience"),
        el("button", { type: "button", id: "preview", onclick: async () => {
          const p = await act("preview", "Aperçu prêt.");
          const blocks = Object.values(p.channels).map((ch) => el("div", { class: "preview" },
            el("h4", {}, ch.channel === "sms" ? `SMS — ${ch.encoding}, ${ch.segments} segment(s)` : `E-mail — ${ch.subject}`),
            el("pre", { class: "preview-text" }, ch.text)));
          document.getElementById("extra").replaceChildren(el("p", {}, `Pour l'adhérent ${p.member} :`), ...blocks);
        } }, "Aperçu"),
        start,
        el("button", { type: "button", id: "schedule", onclick: async () => {
          try {
            const plan = await api(`/console/api/campaigns/${encodeURIComponent(id)}/schedule`, start.value ? { start_at: start.value } : {});
            toast(`Programmée pour ${plan.planned} adhérents.`);
            await loadList(); await open(id);
          } catch (err) {
            document.getElementById("extra").replaceChildren(el("p", { class: "error", id: "schedule-error" }, err.message));
          }
        } }, "Programmer"));
    }
    if (c.state === "scheduled" || c.state === "sending") actions.append(el("button", { type: "button", id: "pause", onclick: async () => { await act("pause", "Campagne en pause."); open(id); loadList(); } }, "Pause"));
    if (c.state === "paused") actions.append(el("button", { type: "button", id: "resume", onclick: async () => { await act("resume", "Campagne reprise."); open(id); loadList(); } }, "Reprendre"));
    if (!["done", "cancelled"].includes(c.state)) actions.append(el("button", { type: "button", id: "cancel", onclick: async () => { if (confirm("Annuler cette campagne ?")) { await act("cancel", "Campagne annulée."); open(id); loadList(); } } }, "Annuler"));
    if (c.state !== "draft") actions.append(el("a", { href: `/console/api/campaigns/${encodeURIComponent(id)}/proof.csv`, id: "proof" }, "Preuve d'envoi (CSV)"));
    const done = r.planned ? (r.notified + r.postal) / r.planned : 0;
    pane.replaceChildren(
      el("h2", {}, c.title),
      el("p", {}, `${c.kind_label}${c.mandatory ? " (information obligatoire)" : ""} · ${c.effective_date ? "effet le " + c.effective_date : "effet à la date d'appel de chaque adhérent"}`),
      el("p", {}, `Audience : ${c.audience_label} · canaux : ${c.channels.join(" puis ")} · ${c.window_label}`),
      el("p", { id: "state" }, `État : ${STATES[r.state] || r.state}${r.planned ? ` · ${r.planned} adhérents prévus` : ""}`),
      r.planned ? bar(Math.min(1, done)) : null,
      r.planned ? el("p", { id: "figures" }, `${r.notified} notices envoyées, ${r.fallbacks} relances sur un autre canal, ${r.postal} par courrier, ${r.late} hors délai`) : null,
      r.planned ? chart(r.by_status) : null,
      actions,
      extra || el("div", { id: "extra" }));
    await loadList();
    if (["scheduled", "sending"].includes(r.state)) timer = setTimeout(() => { if (current === id) open(id); }, 2000);
  }

  document.getElementById("logout").addEventListener("click", async () => {
    await api("/console/logout", {}).catch(() => {});
    location.href = "/console/login";
  });
  loadList();
})();
