// « Mon profil »: the signed-in staff member changes their own phone (the one « Prendre l'appel » and
// « Appeler » ring). The POST carries the session's CSRF token; a refused number is said beside the
// field (aria-invalid, aria-describedby) and the focus goes back to it.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const form = document.getElementById("phone-form");
  const input = document.getElementById("phone");
  const error = document.getElementById("phone-error");
  const status = document.getElementById("phone-status");
  const save = document.getElementById("phone-save");

  async function post(path, body) {
    const resp = await fetch(path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body),
    });
    if (resp.status === 401) { location.href = "/console/login"; throw new Error("login"); }
    const data = await resp.json().catch(() => ({}));
    return { ok: resp.ok, data };
  }

  function showError(text) {
    error.textContent = text;
    error.hidden = false;
    input.setAttribute("aria-invalid", "true");
    status.textContent = "";
    input.focus();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    save.disabled = true;
    try {
      const { ok, data } = await post("/console/api/profile", { phone: input.value });
      if (!ok) { showError(data.detail || "Enregistrement refusé."); return; }
      error.hidden = true;
      error.textContent = "";
      input.removeAttribute("aria-invalid");
      input.value = data.phone || "";
      status.textContent = data.has_phone
        ? `Numéro enregistré : ${data.phone}. Vos appels sonneront sur ce téléphone.`
        : "Numéro retiré : vous ne pouvez plus prendre d'appel.";
    } catch (err) {
      if (err.message !== "login") showError("Le serveur ne répond pas : réessayez dans un instant.");
    } finally {
      save.disabled = false;
    }
  });

  document.getElementById("logout").addEventListener("click", async () => {
    await post("/console/logout", {}).catch(() => {});
    location.href = "/console/login";
  });
})();
