// Small enhancements only: every page works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Snooze presets are computed in the user's own time zone.
  let tz = "";
  try { tz = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { tz = ""; }
  document.querySelectorAll("input[data-tz]").forEach((el) => { el.value = tz; });

  // The Inbox switch applies as soon as a teammate is chosen.
  document.querySelectorAll("select[data-autosubmit]").forEach((el) => {
    el.addEventListener("change", () => el.form.submit());
  });

  // Provider picker: prefill the server fields from the preset (still editable).
  document.querySelectorAll("form[data-server-form]").forEach((form) => {
    const picker = form.querySelector("select[data-presets]");
    const hint = form.querySelector("[data-provider-hint]");
    if (!picker) return;
    const fill = (initial) => {
      const opt = picker.selectedOptions[0];
      if (!opt) return;
      for (const key of ["imap-host", "imap-port", "imap-security", "smtp-host", "smtp-port", "smtp-security"]) {
        const field = form.querySelector(`[data-field="${key}"]`);
        if (field && !(initial && field.value)) field.value = opt.dataset[key.replace(/-(\w)/, (_, c) => c.toUpperCase())] || "";
      }
      if (hint && opt.dataset.hint) hint.textContent = opt.dataset.hint;
      const servers = form.querySelector("details.servers");
      if (servers && opt.value === "other") servers.open = true;
    };
    picker.addEventListener("change", () => fill(false));
    fill(true);
  });

  // Sync health refreshes itself every 3 seconds.
  const health = document.querySelector("#health[data-refresh]");
  if (health) {
    setInterval(async () => {
      try {
        const resp = await fetch(health.dataset.refresh, { credentials: "same-origin" });
        if (!resp.ok) return;
        const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
        const fresh = doc.querySelector("#health");
        const current = document.querySelector("#health");
        if (fresh && current) current.replaceWith(document.importNode(fresh, true));
      } catch (e) { /* offline for a moment: try again next tick */ }
    }, 3000);
  }
});
