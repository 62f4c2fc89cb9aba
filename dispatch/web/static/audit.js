// The audit log, for admins and alarm managers: a search over who saw or changed what,
// newest first, a page at a time, and the same search as a CSV file (GET /api/audit).

import { h } from "./dom.js";
import { dateTime, errorText } from "./model.js";
import { ROLE_LABEL } from "./roles.js";

const $ = (id) => document.getElementById(id);
const PAGE = 100;
const TEXT_FILTERS = [["audit-actor", "actor"], ["audit-action", "action"],
  ["audit-subject-type", "subject_type"], ["audit-subject-id", "subject_id"]];
const TIME_FILTERS = [["audit-from", "from"], ["audit-to", "to"]];

const ZONE = "Europe/Stockholm"; // the times the dashboard shows (model.js)
const zoneParts = new Intl.DateTimeFormat("en-US", {
  timeZone: ZONE, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit",
});

/** How far Swedish time is ahead of UTC at the instant `ms`. */
function zoneOffsetMs(ms) {
  const p = Object.fromEntries(zoneParts.formatToParts(new Date(ms)).map((x) => [x.type, x.value]));
  const wall = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second);
  return wall - Math.floor(ms / 1000) * 1000;
}

/** "2026-11-23T10:00" (the picker's value, read as Swedish time) -> an ISO instant in UTC. */
export function swedishTimeToIso(value) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?/.exec(value);
  if (!m) return null;
  const wall = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0));
  const guess = wall - zoneOffsetMs(wall);
  return new Date(wall - zoneOffsetMs(guess)).toISOString(); // right across a DST change too
}

/** The form's filters as query parameters; the times (Swedish, as shown) sent in UTC. */
export function auditParams(values) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(values)) {
    const text = (value || "").trim();
    if (!text) continue;
    if (key === "from" || key === "to") {
      const at = swedishTimeToIso(text);
      if (at) params.set(key, at);
    } else {
      params.set(key, text);
    }
  }
  return params;
}

/** deps: call(path, opts) -> {ok, status, body, network}, or null once the session ended. */
export function createAudit({ call }) {
  const A = { running: false, seq: 0, cursor: null, params: null, count: 0 };

  function filters() {
    const values = {};
    for (const [id, key] of [...TEXT_FILTERS, ...TIME_FILTERS]) values[key] = $(id).value;
    return auditParams(values);
  }

  function updateExport() {
    const params = filters();
    params.set("format", "csv");
    $("audit-csv").href = `/api/audit?${params}`;
  }

  async function search(fresh) {
    if (fresh) {
      A.seq += 1;
      A.cursor = null;
      A.count = 0;
      A.params = filters();
      $("audit-entries").replaceChildren();
      updateExport();
    }
    const seq = A.seq;
    const params = new URLSearchParams(A.params);
    params.set("limit", String(PAGE));
    if (A.cursor) params.set("cursor", String(A.cursor));
    $("audit-status").textContent = "Searching…";
    $("audit-more").disabled = true;
    const res = await call(`/api/audit?${params}`);
    if (res === null) return;
    if (seq !== A.seq || !A.running) return;
    $("audit-more").disabled = false;
    if (!res.ok) {
      $("audit-status").textContent = res.network
        ? "Cannot reach the server. Try again."
        : `The search was refused: ${errorText(res.body, `error ${res.status}`)}`;
      return;
    }
    const entries = res.body.entries || [];
    $("audit-entries").append(...entries.map(row));
    A.count += entries.length;
    A.cursor = res.body.next_cursor;
    $("audit-more").hidden = !A.cursor;
    $("audit-table").hidden = A.count === 0;
    $("audit-status").textContent = !A.count ? "No entries match."
      : A.cursor ? `The ${A.count} most recent matching entries.` : `All ${A.count} matching entries.`;
  }

  function row(e) {
    const detail = e.detail && Object.keys(e.detail).length ? JSON.stringify(e.detail) : "";
    return h("tr", { dataset: { id: e.id, action: e.action, subjectType: e.subject_type || "", subjectId: e.subject_id || "" } },
      h("td", { class: "num nowrap" }, dateTime(e.at)),
      h("td", {}, e.actor || ""),
      h("td", {}, ROLE_LABEL[e.role] || e.role || ""),
      h("th", { scope: "row", class: "audit-action" }, e.action),
      h("td", { class: "nowrap" }, e.subject_type ? `${e.subject_type} ${e.subject_id ?? ""}` : ""),
      h("td", { class: "num" }, e.address || ""),
      h("td", { class: "audit-detail" }, detail));
  }

  return {
    wire() {
      $("audit-form").addEventListener("submit", (event) => {
        event.preventDefault();
        search(true);
      });
      $("audit-form").addEventListener("input", updateExport);
      $("audit-more").addEventListener("click", () => search(false));
    },
    /** The view is shown: the first search, once per session (Search looks again). */
    show() {
      if (A.running) return;
      A.running = true;
      search(true);
    },
    stop() {
      A.running = false;
      A.seq += 1;
      A.cursor = null;
      A.count = 0;
      $("audit-form").reset();
      $("audit-entries").replaceChildren();
      $("audit-table").hidden = true;
      $("audit-more").hidden = true;
      $("audit-status").textContent = "";
      updateExport();
    },
  };
}
