// The users page, for admins: the list; adding a user (its API token shown once);
// disabling and enabling; a new role; a new password; revoking every session and token.
// Each change is the server's (dispatch/api/users.py), which records it in the audit log;
// the page shows the server's `detail` when it refuses.

import { h, hidden } from "./dom.js";
import { dateTime, errorText } from "./model.js";
import { ROLE_LABEL } from "./roles.js";

const $ = (id) => document.getElementById(id);
const MIN_PASSWORD = 10; // dispatch/users.py MIN_PASSWORD

/**
 * deps: call(path, opts) -> {ok, status, body, network}, or null once the session has
 * ended; toast(text, kind); me() -> the signed-in user.
 */
export function createUsers({ call, toast, me }) {
  const U = {
    running: false,
    seq: 0,
    users: [],
    teams: null, // [{code, name}], loaded once per session
    acting: null, // {name, action} of the open dialog, to put focus back on its button
    confirmed: null, // what the confirm dialog runs
  };

  const refused = (res, fallback) => (res.network
    ? "Could not reach the server. Nothing was changed. Try again."
    : errorText(res.body, `${fallback} (${res.status}).`));

  function status(text) {
    $("users-status").textContent = text || "";
  }

  function formError(id, text) {
    const e = $(id);
    e.textContent = text || "";
    e.hidden = !text;
  }

  // -- the list -------------------------------------------------------------------------------

  async function load() {
    const seq = ++U.seq;
    const res = await call("/api/users");
    if (!res || seq !== U.seq || !U.running) return;
    if (!res.ok) {
      status(`The users could not be loaded: ${refused(res, "the server refused")}`);
      return;
    }
    status("");
    U.users = res.body;
    render();
  }

  async function loadTeams() {
    if (U.teams) return;
    const res = await call("/api/teams");
    if (!res || !res.ok || !U.running) return;
    U.teams = res.body.map((t) => ({ code: t.code, name: t.name }));
    for (const select of [$("add-user-team"), $("role-team")]) {
      select.replaceChildren(...U.teams.map((t) => h("option", { value: t.code }, `${t.name} (${t.code})`)));
    }
  }

  function render() {
    const list = $("users");
    const active = document.activeElement;
    const focus = list.contains(active)
      ? { name: active.closest("tr")?.dataset.name, action: active.dataset.action } : null;
    $("users-count").textContent = ` (${U.users.length})`;
    list.replaceChildren(...U.users.map(row));
    if (focus?.name) {
      const tr = [...list.querySelectorAll("tr")].find((r) => r.dataset.name === focus.name);
      (tr?.querySelector(`[data-action="${focus.action}"]`) || tr?.querySelector("[data-action]"))?.focus();
    }
  }

  function row(u) {
    const you = me()?.name === u.name;
    const label = hidden(` ${u.name}`);
    const button = (action, text, cls = "btn btn-small") =>
      h("button", { type: "button", class: cls, dataset: { action } }, text, label.cloneNode(true));
    return h("tr", { class: u.enabled ? "user-row" : "user-row is-disabled", dataset: { name: u.name, enabled: String(u.enabled) } },
      h("th", { scope: "row" }, u.name, you && h("span", { class: "muted small" }, " (you)")),
      h("td", {}, ROLE_LABEL[u.role] || u.role, u.team && h("span", { class: "muted" }, `, ${u.team}`)),
      h("td", {}, h("span", { class: `badge ${u.enabled ? "badge-enabled" : "badge-disabled"}`, dataset: { role: "status" } },
        u.enabled ? "Enabled" : "Disabled")),
      h("td", {}, u.has_password ? "Set" : h("span", { class: "muted" }, "None")),
      h("td", { class: "num" }, String(u.tokens)),
      h("td", { class: "num" }, String(u.sessions)),
      h("td", { class: "num" }, dateTime(u.created_at).slice(0, 16)),
      h("td", { class: "row-actions" },
        u.enabled ? button("disable", "Disable", "btn btn-small btn-danger-quiet") : button("enable", "Enable"),
        button("role", "Change role…"),
        button("password", "Reset password…"),
        button("revoke", "Revoke tokens", "btn btn-small btn-danger-quiet")));
  }

  function onListClick(event) {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const name = button.closest("tr").dataset.name;
    const user = U.users.find((u) => u.name === name);
    if (!user) return;
    U.acting = { name, action: button.dataset.action };
    const action = button.dataset.action;
    if (action === "enable") change(user, "enable", button);
    else if (action === "disable") {
      confirm(`Disable ${name}?`, `${name}'s sessions and API tokens end at once, and ${name} cannot sign in ` +
        "until enabled again.", "Disable user", (errorId) => change(user, "disable", null, errorId));
    } else if (action === "revoke") {
      confirm(`Revoke ${name}'s tokens?`, `Every session and API token of ${name} ends at once: ` +
        "open dashboards return to the sign-in page and scripts using a token stop working.",
      "Revoke tokens", (errorId) => change(user, "revoke-tokens", null, errorId));
    } else if (action === "role") openRole(user);
    else if (action === "password") openPassword(user);
  }

  const DONE = {
    enable: (u) => `${u.name} is enabled again.`,
    disable: (u) => `${u.name} is disabled: their sessions and tokens have ended.`,
    "revoke-tokens": (u, body) => `${u.name}'s sessions and API tokens ended (${body.revoked ?? 0}).`,
  };

  /** POST /api/users/{name}/{action}; from a dialog, its error line shows a refusal. */
  async function change(user, action, button, errorId) {
    if (button) button.disabled = true;
    try {
      const res = await call(`/api/users/${encodeURIComponent(user.name)}/${action}`, { method: "POST" });
      if (!res) return false;
      if (!res.ok) {
        const text = refused(res, "The server refused");
        if (errorId) formError(errorId, text);
        else toast(text, "error");
        return false;
      }
      toast(DONE[action](user, res.body));
      replace(res.body.user);
      return true;
    } finally {
      if (button?.isConnected) button.disabled = false;
    }
  }

  function replace(view) {
    if (!view) return;
    const at = U.users.findIndex((u) => u.name === view.name);
    if (at === -1) U.users.push(view);
    else U.users[at] = view;
    render();
    load(); // counts of others may have changed too (a new admin, say)
  }

  // -- adding a user --------------------------------------------------------------------------

  function showTeamField(roleSelect, field) {
    field.hidden = roleSelect.value !== "responder";
  }

  async function onAdd(event) {
    event.preventDefault();
    formError("add-user-error", "");
    const nameField = $("add-user-name");
    const passwordField = $("add-user-password");
    const name = nameField.value.trim();
    const role = $("add-user-role").value;
    const password = passwordField.value;
    nameField.removeAttribute("aria-invalid");
    passwordField.removeAttribute("aria-invalid");
    if (!name) {
      nameField.setAttribute("aria-invalid", "true");
      formError("add-user-error", "Write the user's name.");
      nameField.focus();
      return;
    }
    if (password && password.length < MIN_PASSWORD) {
      passwordField.setAttribute("aria-invalid", "true");
      formError("add-user-error", `A password needs at least ${MIN_PASSWORD} characters (or leave it empty).`);
      passwordField.focus();
      return;
    }
    const body = { name, role };
    if (role === "responder") body.team = $("add-user-team").value || null;
    if (password) body.password = password;
    const submit = $("add-user-submit");
    submit.disabled = true;
    try {
      const res = await call("/api/users", { method: "POST", body });
      if (!res) return;
      if (!res.ok) {
        formError("add-user-error", refused(res, "The user could not be added"));
        nameField.focus();
        return;
      }
      $("add-user-form").reset();
      showTeamField($("add-user-role"), $("add-user-team-field"));
      toast(`${res.body.user.name} added as ${ROLE_LABEL[res.body.user.role] || res.body.user.role}.`);
      replace(res.body.user);
      showToken(res.body.user.name, res.body.token);
    } finally {
      submit.disabled = false;
    }
  }

  /** The new user's API token, this once; it leaves the page when the dialog closes. */
  function showToken(name, token) {
    const field = $("token-value");
    field.value = token;
    $("token-title").textContent = `API token for ${name}`;
    $("token-context").textContent = `${name} can use it at once; it works until revoked.`;
    $("token-copy-hint").textContent = "Select the field and press Ctrl+C, or use Copy.";
    U.acting = { name, action: null };
    $("token-dialog").showModal();
    field.focus();
    field.select();
  }

  async function copyToken() {
    const field = $("token-value");
    field.focus();
    field.select();
    let copied = false;
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(field.value);
        copied = true;
      }
    } catch {
      copied = false;
    }
    if (!copied) {
      try {
        copied = document.execCommand("copy");
      } catch {
        copied = false;
      }
    }
    $("token-copy-hint").textContent = copied
      ? "Copied. Paste it where the user will get it; it is not shown again."
      : "Could not copy by itself: the token is selected, press Ctrl+C.";
  }

  // -- role, password, confirm dialogs ------------------------------------------------------------

  let dialogUser = null;

  function openRole(user) {
    dialogUser = user;
    $("role-title").textContent = `Change role of ${user.name}`;
    $("role-context").textContent = `Now ${ROLE_LABEL[user.role] || user.role}${user.team ? `, ${user.team}` : ""}.`;
    $("role-role").value = user.role;
    if (user.team) $("role-team").value = user.team;
    showTeamField($("role-role"), $("role-team-field"));
    formError("role-error", "");
    $("role-dialog").showModal();
    $("role-role").focus();
  }

  async function onRole(event) {
    event.preventDefault();
    const user = dialogUser;
    if (!user) return;
    const role = $("role-role").value;
    const body = { role, team: role === "responder" ? $("role-team").value || null : null };
    const submit = $("role-submit");
    submit.disabled = true;
    try {
      const res = await call(`/api/users/${encodeURIComponent(user.name)}/role`, { method: "PUT", body });
      if (!res) return;
      if (!res.ok) {
        formError("role-error", refused(res, "The role could not be changed"));
        return;
      }
      $("role-dialog").close();
      toast(`${user.name} is now ${ROLE_LABEL[role] || role}${body.team ? `, ${body.team}` : ""}.`);
      replace(res.body.user);
    } finally {
      submit.disabled = false;
    }
  }

  function openPassword(user) {
    dialogUser = user;
    $("password-title").textContent = `Reset the password of ${user.name}`;
    $("password-context").textContent = user.has_password ? "Replaces the current password." : "The user has no password yet.";
    $("password-new").value = "";
    $("password-new").removeAttribute("aria-invalid");
    formError("password-error", "");
    $("password-dialog").showModal();
    $("password-new").focus();
  }

  async function onPassword(event) {
    event.preventDefault();
    const user = dialogUser;
    if (!user) return;
    const field = $("password-new");
    const password = field.value;
    if (password.length < MIN_PASSWORD) {
      field.setAttribute("aria-invalid", "true");
      formError("password-error", `A password needs at least ${MIN_PASSWORD} characters.`);
      field.focus();
      return;
    }
    const submit = $("password-submit");
    submit.disabled = true;
    try {
      const res = await call(`/api/users/${encodeURIComponent(user.name)}/reset-password`,
        { method: "POST", body: { password } });
      if (!res) return;
      if (!res.ok) {
        formError("password-error", refused(res, "The password could not be set"));
        return;
      }
      $("password-dialog").close();
      toast(`New password set for ${user.name}; their open sessions have ended.`);
      replace(res.body.user);
    } finally {
      submit.disabled = false;
    }
  }

  /** Ask first; `run(errorId)` makes the change, showing a refusal on the dialog's error line. */
  function confirm(title, text, action, run) {
    U.confirmed = run;
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-submit").textContent = action;
    formError("confirm-error", "");
    $("confirm-dialog").showModal();
    $("confirm-submit").focus();
  }

  async function onConfirm(event) {
    event.preventDefault();
    const run = U.confirmed;
    if (!run) return;
    const submit = $("confirm-submit");
    submit.disabled = true;
    try {
      // Refused (the last admin, say): the reason stays in the dialog.
      if (await run("confirm-error")) $("confirm-dialog").close();
    } finally {
      submit.disabled = false;
    }
  }

  function onDialogClosed(event) {
    const dialog = event.target;
    if (dialog.id === "token-dialog") $("token-value").value = ""; // shown once: gone now
    if (dialog.id === "password-dialog") $("password-new").value = "";
    if (dialog.id === "confirm-dialog") U.confirmed = null;
    dialogUser = null;
    const back = U.acting;
    U.acting = null;
    if (!back || !U.running) return;
    const tr = [...$("users").querySelectorAll("tr")].find((r) => r.dataset.name === back.name);
    const target = tr && (tr.querySelector(`[data-action="${back.action}"]`) || tr.querySelector("[data-action]"));
    (target || $("users-title")).focus();
  }

  return {
    /** Once, at boot: the listeners of the page and its dialogs. */
    wire() {
      $("users").addEventListener("click", onListClick);
      $("add-user-form").addEventListener("submit", onAdd);
      $("add-user-role").addEventListener("change", () => showTeamField($("add-user-role"), $("add-user-team-field")));
      $("role-role").addEventListener("change", () => showTeamField($("role-role"), $("role-team-field")));
      $("role-form").addEventListener("submit", onRole);
      $("password-form").addEventListener("submit", onPassword);
      $("confirm-form").addEventListener("submit", onConfirm);
      $("token-copy").addEventListener("click", copyToken);
      for (const id of ["token-dialog", "role-dialog", "password-dialog", "confirm-dialog"]) {
        $(id).addEventListener("close", onDialogClosed);
      }
      for (const [field, error] of [["add-user-name", "add-user-error"], ["add-user-password", "add-user-error"],
        ["password-new", "password-error"]]) {
        $(field).addEventListener("input", () => {
          $(field).removeAttribute("aria-invalid");
          formError(error, "");
        });
      }
    },
    /** The view is shown: (re)load the list. */
    show() {
      if (!U.running) {
        U.running = true;
        loadTeams();
      }
      load();
    },
    stop() {
      U.running = false;
      U.seq += 1;
      U.users = [];
      U.teams = null;
      U.acting = null;
      U.confirmed = null;
      $("users").replaceChildren();
      $("users-count").textContent = "";
      $("add-user-form").reset();
      $("add-user-team-field").hidden = true;
      $("token-value").value = "";
      formError("add-user-error", "");
      status("");
    },
  };
}
