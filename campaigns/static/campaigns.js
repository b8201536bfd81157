// The campaign console: list, draft form (create and edit), count, preview of three members,
// schedule, live progress and proof. All text is set with textContent; POSTs carry the CSRF token.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const STATES = { draft: "brouillon", scheduled: "programmée", sending: "en cours", paused: "en pause", done: "terminée", cancelled: "annulée" };
  const STATUS = { planned: "prévues", queued: "en file", sending: "en envoi", sent: "envoyées", delivered: "distribuées", read: "lues", failed: "échecs", canceled: "annulées", undelivered: "non distribuées", postal: "courrier" };
  const CHANNELS = { email: "e-mail", sms: "SMS", whatsapp: "WhatsApp", none: "aucun canal (courrier)" };
  const WORKING = { start: "09:00", end: "19:00", days: ["1", "2", "3", "4", "5"] };
  const euros = new Intl.NumberFormat("fr-FR", { style: "currency", currency: "EUR" });
  const form = document.getElementById("create");
  const detail = document.getElementById("detail");
  let current = null;
  let editing = null; // the draft being edited, or null for a new one
  let timer = null;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined && c !== false) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }
  // replaceChildren(null) would write "null": only real nodes and texts go in.
  function fill(node, ...children) { node.replaceChildren(...children.filter((c) => c !== null && c !== undefined && c !== false)); }
  function toast(text) {
    const box = document.getElementById("toast");
    box.textContent = text; box.hidden = false;
    clearTimeout(toast.t); toast.t = setTimeout(() => { box.hidden = true; }, 6000);
  }
  function message(data) {
    return data.fields ? Object.values(data.fields).join(" ") : (data.detail || "Refusé.");
  }
  async function api(path, body, method) {
    const init = body === undefined ? { credentials: "same-origin" }
      : { method: method || "POST", credentials: "same-origin", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body) };
    const resp = await fetch(path, init);
    if (resp.status === 401) { location.href = "/console/login"; throw new Error("login"); }
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) { const err = new Error(message(data)); err.fields = data.fields; throw err; }
    return data;
  }
  async function upload(path, file) {
    const resp = await fetch(path, { method: "POST", credentials: "same-origin", headers: { "Content-Type": "text/csv", "X-CSRF-Token": csrf }, body: file });
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(message(data));
    return data;
  }
  const url = (id, rest) => `/console/api/campaigns/${encodeURIComponent(id)}${rest || ""}`;

  async function loadList() {
    const rows = await api("/console/api/campaigns");
    fill(document.getElementById("list"), ...rows.map((c) => el("li", {},
      el("button", { type: "button", class: `item ${c.id === current ? "current" : ""}`, "data-id": c.id, "aria-current": c.id === current ? "true" : null, onclick: () => open(c.id, true) },
        el("strong", {}, c.title),
        el("span", { class: "summary" }, `${c.kind_label} · ${c.state_label || STATES[c.state] || c.state}${c.planned ? ` · ${c.planned} adhérents` : ""}`)))));
  }

  // ---------------------------------------------------------------- the draft form
  function values(text) {
    const out = {};
    for (const line of text.split("\n")) {
      const i = line.indexOf("=");
      if (i > 0) out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
    }
    return out;
  }
  function windowWarning() {
    const start = form.elements.start.value, end = form.elements.end.value;
    const days = [...form.querySelectorAll("input[name=weekdays]:checked")].map((i) => i.value);
    const outside = [];
    if (start < WORKING.start || end > WORKING.end) outside.push(`de ${start} à ${end}`);
    if (days.some((d) => !WORKING.days.includes(d))) outside.push("le samedi");
    const box = document.getElementById("window-warning");
    box.textContent = outside.length ? `Attention : hors des heures ouvrées (9 h – 19 h, du lundi au vendredi), des notices partiraient ${outside.join(" et ")}.` : "";
    box.hidden = !outside.length;
  }
  function clearErrors() {
    const box = document.getElementById("create-errors");
    box.hidden = true; box.replaceChildren();
    form.querySelectorAll("[aria-invalid]").forEach((n) => n.removeAttribute("aria-invalid"));
    form.querySelectorAll(".field-error").forEach((n) => { n.hidden = true; n.textContent = ""; });
  }
  function showErrors(err) {
    const box = document.getElementById("create-errors");
    const fields = err.fields || {};
    const items = Object.entries(fields).map(([k, v]) => el("li", {}, v));
    fill(box, el("p", {}, "Le brouillon n'a pas été enregistré :"), items.length ? el("ul", {}, ...items) : el("p", {}, err.message));
    box.hidden = false;
    const inputs = { title: "f-title", effective_date: "f-effective", max_change_percent: "f-bound", channels: "f-channels", values: "f-values", window: "f-start", audience: "f-regions", templates: "f-values" };
    for (const [k, v] of Object.entries(fields)) {
      const input = document.getElementById(inputs[k] || "");
      if (input) input.setAttribute("aria-invalid", "true");
      const note = document.getElementById(`err-${k}`);
      if (note) { note.textContent = v; note.hidden = false; }
    }
  }
  function showForm(campaign) {
    editing = campaign;
    clearTimeout(timer);
    form.reset();
    clearErrors();
    document.getElementById("form-title").textContent = campaign ? `Modifier le brouillon « ${campaign.title} »` : "Nouvelle campagne";
    document.getElementById("save").textContent = campaign ? "Enregistrer le brouillon" : "Créer le brouillon";
    if (campaign) {
      const f = form.elements;
      f.kind.value = campaign.kind; f.title.value = campaign.title;
      f.when.value = campaign.date_field ? "member" : "fixed";
      f.effective_date.value = campaign.effective_date || "";
      form.querySelectorAll("input[name=cover_levels]").forEach((i) => { i.checked = campaign.audience.cover_levels.includes(i.value); });
      form.querySelectorAll("input[name=segments]").forEach((i) => { i.checked = campaign.audience.segments.includes(i.value); });
      f.regions.value = campaign.audience.regions.join(", ");
      f.age_min.value = campaign.audience.age_min ?? ""; f.age_max.value = campaign.audience.age_max ?? "";
      f.members.value = campaign.audience.members.join("\n");
      f.channels.value = campaign.channels.join(",");
      f.max_change_percent.value = campaign.max_change_percent;
      f.values.value = Object.entries(campaign.values).map(([k, v]) => `${k} = ${v}`).join("\n");
      f.start.value = campaign.window.start || "09:00"; f.end.value = campaign.window.end || "19:00";
      const days = (campaign.window.weekdays || [1, 2, 3, 4, 5, 6]).map(String);
      form.querySelectorAll("input[name=weekdays]").forEach((i) => { i.checked = days.includes(i.value); });
    }
    windowWarning();
    form.hidden = false;
    detail.hidden = true;
    document.getElementById("form-title").focus();
  }
  function closeForm() {
    form.reset(); clearErrors(); windowWarning();
    form.hidden = true; detail.hidden = false; editing = null;
  }

  document.getElementById("new").addEventListener("click", () => { current = null; loadList(); showForm(null); });
  document.getElementById("close-form").addEventListener("click", () => { const back = editing && editing.id; closeForm(); if (back) open(back, true); else document.getElementById("new").focus(); });
  form.addEventListener("input", windowWarning);
  form.addEventListener("change", windowWarning);

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const fd = new FormData(form);
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
      max_change_percent: fd.get("max_change_percent"),
      values: values(String(fd.get("values") || "")),
      window: { start: fd.get("start"), end: fd.get("end"), weekdays: fd.getAll("weekdays").map(Number) },
    };
    const file = fd.get("list");
    clearErrors();
    try {
      const c = editing ? await api(url(editing.id), body, "PUT") : await api("/console/api/campaigns", body);
      let note = editing ? "Brouillon enregistré." : "Brouillon créé.";
      if (file && file.size) {
        try {
          const r = await upload(url(c.id, "/audience"), file);
          note = `${note} Fichier importé : ${r.members} adhérents` + (r.unknown ? `, dont ${r.unknown} inconnus à ce jour` : "")
            + (r.bad_count ? ` ; ${r.bad_count} ligne(s) ignorée(s) (ligne ${r.bad_lines.join(", ")})` : "")
            + (r.variables && r.variables.length ? ` ; valeurs par adhérent : ${r.variables.join(", ")}` : "") + ".";
        } catch (err) {
          if (!editing) await api(url(c.id, "/cancel"), {});  // never a new draft aimed at everyone by mistake
          throw new Error(`Le fichier n'a pas pu être importé : ${err.message}${editing ? "" : " Le brouillon a été annulé."}`);
        }
      }
      closeForm();
      toast(note);
      await open(c.id, true);
    } catch (err) {
      showErrors(err);
      document.getElementById("create-errors").focus();
    }
  });

  // ---------------------------------------------------------------- a campaign's detail
  function bar(value) {
    const pct = Math.round(value * 100);
    const fill = el("span");
    fill.style.width = `${pct}%`;  // through CSSOM: a style attribute breaks the CSP
    return el("div", { class: "progress", role: "progressbar", "aria-label": "Notices envoyées", "aria-valuenow": pct, "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuetext": `${pct} % des notices envoyées` },
      fill, el("em", { "aria-hidden": "true" }, `${pct} %`));
  }
  function chart(byStatus) {
    const ns = "http://www.w3.org/2000/svg";
    const entries = Object.entries(byStatus);
    const max = Math.max(1, ...entries.map(([, n]) => n));
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 420 ${30 * entries.length + 10}`);
    svg.setAttribute("aria-hidden", "true");
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
    const text = entries.map(([s, n]) => `${STATUS[s] || s} : ${n}`).join(", ");
    return el("div", { class: "chart", role: "img", "aria-label": `Notices par statut : ${text}` }, svg);
  }
  function stateLine(r, c) {
    if (r.state === "draft") return "État : brouillon, modifiable jusqu'à sa programmation";
    if (r.state === "scheduled") return `État : programmée · ${r.planned} adhérents prévus · départ le ${c.start_label}`;
    if (r.state === "sending" && !r.remaining && r.waiting_label) {
      return `État : toutes les notices sont parties · ${r.planned} adhérents prévus · en attente d'éventuels retours de non-distribution ${r.waiting_label}`;
    }
    const since = c.start_label ? ` · départ le ${c.start_label}` : "";
    return `État : ${STATES[r.state] || r.state}${r.planned ? ` · ${r.planned} adhérents prévus` : ""}${since}`;
  }
  function amount(v) { const n = Number(v); return Number.isFinite(n) ? euros.format(n) : v; }
  function signed(v, unit) {
    const n = Number(v);
    if (!Number.isFinite(n)) return v;
    const text = unit === "%" ? `${new Intl.NumberFormat("fr-FR", { maximumFractionDigits: 1 }).format(n)} %` : euros.format(n);
    return n > 0 ? `+${text}` : text;
  }
  function previewOf(m, i) {
    const f = m.figures || {};
    const figures = f.new_contribution !== undefined && f.current_contribution !== undefined
      ? el("p", { class: "figures" }, `Cotisation : ${amount(f.current_contribution)} → ${amount(f.new_contribution)}`
          + (f.change_eur !== undefined ? ` (${signed(f.change_eur)}, ${signed(f.change_percent, "%")})` : ""))
      : null;
    const blocks = Object.values(m.channels).map((ch) => el("div", { class: "preview" },
      el("h4", {}, ch.channel === "sms" ? `SMS — ${ch.encoding}, ${ch.segments} segment(s)`
        : ch.channel === "email" ? `E-mail — ${ch.subject}` : (CHANNELS[ch.channel] || ch.channel)),
      el("pre", { class: "preview-text" }, ch.text)));
    return el("section", { class: "preview-member", "aria-labelledby": `pv-${i}` },
      el("h3", { id: `pv-${i}` }, `${m.member}${m.name ? ` — ${m.name}` : ""}`),
      figures, m.error ? el("p", { class: "error" }, m.error) : null, ...blocks);
  }

  async function open(id, focus) {
    const same = current === id;
    current = id;
    clearTimeout(timer);
    if (!form.hidden) closeForm();
    // Another campaign: nothing of the previous one stays clickable while this one loads.
    if (!same) fill(detail, el("p", { class: "empty" }, "Chargement de la campagne…"));
    const r = await api(url(id));
    if (current !== id) return;  // another campaign was chosen meanwhile
    const c = r.campaign;
    // The count and preview shown belong to this campaign only: kept while it refreshes, never carried to another.
    const previous = detail.querySelector("#extra");
    const extra = same && previous && previous.dataset.campaign === id ? previous : el("div", { id: "extra", "data-campaign": id, "aria-live": "polite" });
    const output = (...nodes) => fill(extra, ...nodes);
    const actions = el("div", { class: "actions" });
    const act = async (name, label) => {
      try { const out = await api(url(id, `/${name}`), {}); toast(label); return out; }
      catch (err) { toast(err.message); throw err; }
    };
    if (c.state === "draft") {
      const start = el("input", { type: "datetime-local", id: "start-at", "aria-describedby": "start-help" });
      actions.append(
        el("button", { type: "button", id: "edit", onclick: () => showForm(c) }, "Modifier"),
        el("button", { type: "button", id: "count", onclick: async () => {
          try {
            const n = await api(url(id, "/count"), {});
            output(el("p", { id: "count-result" }, `${n.total} adhérents : ` + Object.entries(n.by_channel).map(([k, v]) => `${CHANNELS[k] || k} ${v}`).join(", ")));
          } catch (err) { output(el("p", { class: "error", id: "count-error" }, err.message)); }
        } }, "Compter l'audience"),
        el("button", { type: "button", id: "preview", onclick: async () => {
          try {
            const p = await api(url(id, "/preview"), {});
            output(el("h3", { class: "visually-hidden" }, "Aperçu"), el("div", { class: "previews" }, ...p.members.map(previewOf)));
          } catch (err) { output(el("p", { class: "error", id: "preview-error" }, err.message)); }
        } }, "Aperçu (3 adhérents)"),
        el("span", { class: "start-field" },
          el("label", { for: "start-at" }, "Départ de l'envoi"), start,
          el("span", { id: "start-help", class: "hint" }, "vide : dès maintenant, dans la fenêtre d'envoi")),
        el("button", { type: "button", id: "schedule", onclick: async () => {
          if (c.window_warning && !confirm(`${c.window_warning} Programmer quand même ?`)) return;
          try {
            const plan = await api(url(id, "/schedule"), start.value ? { start_at: start.value } : {});
            toast(`Programmée pour ${plan.planned} adhérents.`);
            await open(id, true);
          } catch (err) {
            output(el("p", { class: "error", id: "schedule-error" }, err.message));
          }
        } }, "Programmer"));
    }
    if (c.state === "scheduled" || c.state === "sending") actions.append(el("button", { type: "button", id: "pause", onclick: async () => { await act("pause", "Campagne en pause."); open(id); } }, "Pause"));
    if (c.state === "paused") actions.append(el("button", { type: "button", id: "resume", onclick: async () => { await act("resume", "Campagne reprise."); open(id); } }, "Reprendre"));
    if (!["done", "cancelled"].includes(c.state)) actions.append(el("button", { type: "button", id: "cancel", onclick: async () => { if (confirm("Annuler cette campagne ?")) { await act("cancel", "Campagne annulée."); open(id); } } }, "Annuler la campagne"));
    if (c.state !== "draft") {
      actions.append(el("a", { href: url(id, "/proof.csv"), id: "proof", download: "" }, "Preuve d'envoi (CSV pour Excel)"),
        el("a", { href: url(id, "/proof.xlsx"), id: "proof-xlsx", download: "" }, "Preuve d'envoi (Excel .xlsx)"));
    }
    const done = r.planned ? (r.notified + r.postal) / r.planned : 0;
    const title = el("h2", { tabindex: "-1", id: "detail-title" }, c.title);
    const focused = detail.contains(document.activeElement) ? document.activeElement.id : "";
    fill(detail,
      title,
      el("p", {}, `${c.kind_label}${c.mandatory ? " (information obligatoire)" : ""} · ${c.effective_date ? `effet le ${c.effective_label}` : "effet à la date d'appel de cotisation de chaque adhérent"}`),
      el("p", {}, `Audience : ${c.audience_label} · canaux : ${c.channels_label} · fenêtre : ${c.window_label}`),
      c.variables && c.variables.length ? el("p", {}, `Valeurs par adhérent (fichier) : ${c.variables.join(", ")}`) : null,
      c.kind === "contribution_change" ? el("p", {}, `Évolution maximale admise : ±${String(c.max_change_percent).replace(".", ",")} %`) : null,
      c.window_warning ? el("p", { class: "warning", id: "window-note" }, c.window_warning) : null,
      el("p", { id: "state" }, stateLine(r, c)),
      r.planned ? bar(Math.min(1, done)) : null,
      r.planned ? el("p", { id: "figures" }, `${r.notified} notices envoyées, ${r.fallbacks} relances sur un autre canal, ${r.postal} par courrier, ${r.late} hors délai`) : null,
      r.planned ? chart(r.by_status) : null,
      actions,
      extra);
    detail.hidden = false;
    if (focus) title.focus();
    else if (focused && document.getElementById(focused)) document.getElementById(focused).focus();  // a refresh keeps the keyboard's place
    await loadList();
    if (["scheduled", "sending"].includes(r.state)) timer = setTimeout(() => { if (current === id && form.hidden) open(id); }, 2000);
  }

  document.getElementById("logout").addEventListener("click", async () => {
    await api("/console/logout", {}).catch(() => {});
    location.href = "/console/login";
  });
  loadList();
})();
