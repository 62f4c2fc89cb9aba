// Device health next to the live queue: incidents (mass events), quiet units, faults and
// the gateway's links to devices; the incident banner above the queue; clearing a
// technical alarm by hand. Always reloaded from the API, never patched from the stream:
// a power cut changes thousands of technical alarms at once, so the stream's "health"
// message only says "look again", and the reloads are spaced at least a second apart.

import { h, hidden } from "./dom.js";
import { clockTime, dateTime, errorText } from "./model.js";

const RELOAD_GAP_MS = 1000; // at most one reload a second, however busy the stream
const RETRY_MS = 5000; // a reload that failed
const SAFETY_REFETCH_MS = 60000; // belt and braces next to the live feed
const LINKS_POLL_MS = 10000; // links are not on the stream: the gateway writes them
const REDRAW_MS = 30000; // "overdue" and "since" move on with the clock
const SHOW_FIRST = 100; // rows per list before "Show all"
const CLOSED_INCIDENTS_SHOWN = 5;

// -- words and rules (no DOM) -----------------------------------------------------------------

export const FAULT_LABEL = {
  link_fault: "Not heard from",
  mains_lost: "Mains power lost",
  battery_low: "Battery low",
  battery_fault: "Battery fault",
  tamper: "Tamper",
};

export const INCIDENT_LABEL = { mains_lost: "Power cut", link_fault: "Link fault" };
const INCIDENT_STILL = { mains_lost: "without mains power", link_fault: "not heard from" };
const INCIDENT_OVER = { mains_lost: "all units back on mains", link_fault: "all units heard from again" };

const LINK_KIND = { mqtt: "MQTT broker", serial: "Serial line", dc09_tcp: "DC-09 over TCP" };
const LINK_UP = new Set(["connected", "open", "listening", "up"]);
const LINK_DOWN = new Set(["down", "disconnected", "closed", "failed", "error"]);

// The order the faults list keeps: dispatch/health.py's statuses, the worst first.
const FAULT_RANK = { mains_lost: 0, battery_fault: 1, tamper: 1, battery_low: 2 };

/** A span of time as the operator says it: "under 1 min", "12 min", "1 h 12 min", "2 d 3 h". */
export function elapsed(totalSeconds) {
  const s = Math.max(0, Math.floor(totalSeconds || 0));
  if (s < 60) return "under 1 min";
  const days = Math.floor(s / 86400);
  const hours = Math.floor((s % 86400) / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  if (days) return hours ? `${days} d ${hours} h` : `${days} d`;
  if (hours) return minutes ? `${hours} h ${minutes} min` : `${hours} h`;
  return `${minutes} min`;
}

export const unitsText = (n) => `${n} ${n === 1 ? "unit" : "units"}`;

/** "ok" (up), "warn" (starting, unknown) or "down" (down, or the gateway stopped writing). */
export function linkLevel(link) {
  if (link.stale) return "down";
  if (LINK_UP.has(link.state)) return "ok";
  if (LINK_DOWN.has(link.state)) return "down";
  return "warn";
}

/** "Power cut in Bro: 23 units" */
export function incidentHeadline(incident, areaName) {
  const what = INCIDENT_LABEL[incident.kind] || incident.kind;
  return `${what} in ${areaName || incident.area || "an unknown area"}: ${unitsText(incident.count)}`;
}

/** Open technical alarms for the faults list: all but link faults (the quiet units), worst first. */
export function faultsInOrder(technical) {
  return technical
    .filter((a) => a.state === "open" && a.kind !== "link_fault")
    .sort((a, b) => (FAULT_RANK[a.kind] ?? 1) - (FAULT_RANK[b.kind] ?? 1) ||
      (a.opened_at < b.opened_at ? -1 : a.opened_at > b.opened_at ? 1 : a.id - b.id));
}

// -- the view ---------------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

/**
 * The health view, wired to the app's session.
 * deps: call(path, opts) -> {ok, status, body, network}, or null once the session has
 * ended; serverNow() -> ms; toast(text, kind); announce(text).
 */
export function createHealth({ call, serverNow, toast, announce }) {
  const H = {
    running: false,
    timers: [],
    reloadTimer: null,
    inFlight: false,
    again: false,
    lastLoad: 0,
    seq: 0,
    linksSeq: 0,
    loaded: false,
    serverTime: null, // of the last load, against which overdue_s was counted
    areas: new Map(), // code -> name
    incidents: [],
    technical: [],
    quiet: [],
    links: null,
    openIncidents: null, // ids open at the last load (null: none loaded yet)
    showAll: { quiet: false, faults: false },
    sigs: {},
    clearing: null, // the technical alarm in the clear dialog
  };

  const areaName = (code) => (code ? H.areas.get(code) || code : "No area");

  /** Time of day within the last 20 hours, else the date too. */
  function when(iso) {
    if (!iso) return "—";
    const age = (serverNow() - Date.parse(iso)) / 1000;
    return age < 20 * 3600 ? clockTime(iso).slice(0, 5) : dateTime(iso).slice(0, 16);
  }

  const ageOf = (iso) => (serverNow() - Date.parse(iso)) / 1000;

  // -- loading -------------------------------------------------------------------------------

  /** Look again soon: now if the last load was over a second ago, else a second after it. */
  function changed() {
    if (!H.running || H.reloadTimer !== null) return;
    const wait = Math.max(0, H.lastLoad + RELOAD_GAP_MS - Date.now());
    H.reloadTimer = setTimeout(reload, wait);
  }

  async function reload() {
    clearTimeout(H.reloadTimer);
    H.reloadTimer = null;
    if (!H.running) return;
    if (H.inFlight) {
      H.again = true; // one more when this one is back: it may have missed the change
      return;
    }
    H.inFlight = true;
    H.lastLoad = Date.now();
    try {
      await Promise.all([loadLists(), loadLinks()]);
    } finally {
      H.inFlight = false;
      if (H.again) {
        H.again = false;
        changed();
      }
    }
  }

  async function loadLists() {
    const seq = ++H.seq;
    const wantAreas = !H.areas.size;
    const [incidents, technical, quiet, areas] = await Promise.all([
      call("/api/incidents?scope=all"),
      // The incidents stand for the units gathered into them: a power cut is one row,
      // not thousands fetched every second.
      call("/api/technical-alarms?scope=open&outside_incidents=true"),
      call("/api/devices/health?status=quiet&outside_incidents=true"),
      wantAreas ? call("/api/areas") : null,
    ]);
    if (seq !== H.seq || !H.running) return;
    if (!incidents || !technical || !quiet) return; // signed out
    if (areas?.ok && Array.isArray(areas.body)) {
      for (const a of areas.body) H.areas.set(a.code, a.name);
    }
    const failed = [incidents, technical, quiet].find((r) => !r.ok);
    if (failed) {
      $("health-status").textContent = failed.network
        ? "Cannot reach the server: device health below may be out of date. Retrying."
        : `Device health could not be loaded (${errorText(failed.body, `error ${failed.status}`)}). Retrying.`;
      H.lastLoad = Date.now() + RETRY_MS - RELOAD_GAP_MS; // the next try in RETRY_MS
      changed();
      return;
    }
    H.serverTime = technical.body.server_time;
    H.incidents = incidents.body.incidents || [];
    H.technical = technical.body.technical_alarms || [];
    H.quiet = quiet.body.devices || [];
    H.loaded = true;
    $("health-status").textContent = "";
    noteIncidentChanges();
    render();
  }

  async function loadLinks() {
    const seq = ++H.linksSeq;
    const res = await call("/api/links");
    if (!res || seq !== H.linksSeq || !H.running) return;
    if (!res.ok) return; // the lists' status line says when the server is away
    H.links = res.body.links || [];
    renderLinks();
  }

  /** Say so once when an incident opens or is over; the banner itself stays quiet. */
  function noteIncidentChanges() {
    const open = new Set(H.incidents.filter((i) => i.state === "open").map((i) => i.id));
    if (H.openIncidents) {
      for (const i of H.incidents) {
        const head = incidentHeadline(i, areaName(i.area));
        if (i.state === "open" && !H.openIncidents.has(i.id)) announce(`${head}.`);
        if (i.state !== "open" && H.openIncidents.has(i.id)) {
          toast(`${INCIDENT_LABEL[i.kind] || i.kind} in ${areaName(i.area)} is over: ${INCIDENT_OVER[i.kind] || "all units back"}.`);
        }
      }
    }
    H.openIncidents = open;
  }

  // -- rendering ------------------------------------------------------------------------------

  function render() {
    if (!H.loaded) return;
    renderBanner();
    renderCount();
    renderIncidents();
    renderQuiet();
    renderFaults();
  }

  /** Rebuild a list only when what it shows changed, keeping keyboard focus on its row. */
  function refill(name, container, rows, build) {
    const sig = JSON.stringify(rows);
    if (H.sigs[name] === sig) return;
    H.sigs[name] = sig;
    const active = document.activeElement;
    const inside = active && container.contains(active);
    const key = inside ? active.closest("[data-key]")?.dataset.key : null;
    const action = inside ? active.dataset?.action : null;
    container.replaceChildren(...build());
    if (key && !container.contains(document.activeElement)) {
      const row = [...container.querySelectorAll("[data-key]")].find((el) => el.dataset.key === key);
      const target = row && ((action && row.querySelector(`[data-action="${action}"]`)) || row);
      if (target) target.focus({ preventScroll: true });
    }
  }

  function openIncidents() {
    return H.incidents.filter((i) => i.state === "open");
  }

  function renderBanner() {
    const open = openIncidents();
    const rows = open.map((i) => [i.id, i.kind, i.area, areaName(i.area), i.count, when(i.opened_at)]);
    refill("banner", $("incident-banners"), rows, () => open.map((i) =>
      h("div", { class: "incident-banner", role: "note", dataset: { incidentId: i.id, key: `banner-${i.id}` } },
        h("span", { class: "incident-banner-mark", "aria-hidden": "true" }, "!"),
        h("p", { class: "incident-banner-text" },
          h("strong", {}, incidentHeadline(i, areaName(i.area))),
          ` ${INCIDENT_STILL[i.kind] || "affected"} since ${when(i.opened_at)}. `,
          h("span", { class: "incident-banner-note" },
            "Help calls from these units still come into the queue below, each on its own row.")),
        h("a", { href: "#health", class: "btn btn-small btn-on-banner" }, "Show in device health"))));
  }

  function renderCount() {
    // The list leaves out the alarms gathered into open incidents; each incident's
    // count is how many of those are open.
    const open = H.technical.filter((a) => a.state === "open").length
      + openIncidents().reduce((sum, i) => sum + i.count, 0);
    const count = $("health-count");
    count.textContent = String(open);
    count.hidden = open === 0;
    count.title = open === 1 ? "1 open technical alarm" : `${open} open technical alarms`;
    $("view-health").classList.toggle("has-incident", openIncidents().length > 0);
  }

  function renderIncidents() {
    const open = openIncidents();
    const closed = H.incidents.filter((i) => i.state !== "open").slice(0, CLOSED_INCIDENTS_SHOWN);
    const shown = [...open, ...closed];
    $("incidents-title-count").textContent = open.length ? ` (${open.length} open)` : "";
    $("incidents-empty").hidden = shown.length > 0;
    const rows = shown.map((i) => [i.id, i.state, i.count, i.peak, when(i.opened_at), when(i.closed_at),
      areaName(i.area), Math.floor(ageOf(i.opened_at) / 60)]);
    refill("incidents", $("incidents"), rows, () => shown.map(incidentRow));
  }

  function incidentRow(i) {
    const isOpen = i.state === "open";
    const what = INCIDENT_LABEL[i.kind] || i.kind;
    const took = i.closed_at ? (Date.parse(i.closed_at) - Date.parse(i.opened_at)) / 1000 : ageOf(i.opened_at);
    return h("li", {
      class: `incident ${isOpen ? "is-open" : "is-closed"}`, tabindex: "-1",
      dataset: { incidentId: i.id, state: i.state, key: `incident-${i.id}` },
    },
    h("span", { class: `badge ${isOpen ? "badge-incident-open" : "badge-closed"}`, dataset: { role: "state" } },
      isOpen ? "Open" : "Closed"),
    h("div", { class: "incident-what" },
      h("h3", { class: "incident-title" }, `${what} in ${areaName(i.area)}`),
      h("p", { class: "incident-count" }, isOpen
        ? [h("strong", {}, unitsText(i.count)), ` ${INCIDENT_STILL[i.kind] || "affected"}`,
            i.peak > i.count ? h("span", { class: "muted" }, ` · at most ${i.peak}`) : ""]
        : [`${INCIDENT_OVER[i.kind] || "over"}`, h("span", { class: "muted" }, ` · at most ${unitsText(i.peak)}`)])),
    h("p", { class: "incident-time" },
      isOpen
        ? [h("span", { class: "muted" }, "Since "), when(i.opened_at), h("span", { class: "muted" }, ` · ${elapsed(took)}`)]
        : [when(i.opened_at), "–", when(i.closed_at), h("span", { class: "muted" }, ` · lasted ${elapsed(took)}`)]));
  }

  function incidentTag(incidentId) {
    if (incidentId == null) return null;
    const i = H.incidents.find((x) => x.id === incidentId);
    if (!i || i.state !== "open") return null;
    return h("span", { class: "tag tag-incident", title: "Part of an incident" },
      `${INCIDENT_LABEL[i.kind] || i.kind} ${areaName(i.area)}`);
  }

  function clearButton(alarmId, cid) {
    return h("button", { type: "button", class: "btn btn-small", dataset: { action: "clear", id: alarmId } },
      "Clear…", hidden(` technical alarm ${alarmId}, unit ${cid}`));
  }

  /** Cut a long list to its first rows unless the operator asked for all of it. */
  function capped(name, items, moreButton) {
    const all = H.showAll[name] || items.length <= SHOW_FIRST;
    moreButton.hidden = all;
    moreButton.textContent = `Show all ${items.length}`;
    return all ? items : items.slice(0, SHOW_FIRST);
  }

  function renderQuiet() {
    const moved = H.serverTime ? Math.max(0, (serverNow() - Date.parse(H.serverTime)) / 1000) : 0;
    const quiet = H.quiet.filter((d) => d.status === "quiet");
    $("quiet-title-count").textContent = ` (${quiet.length})`;
    $("quiet-empty").hidden = quiet.length > 0;
    $("quiet-table").hidden = quiet.length === 0;
    const shown = capped("quiet", quiet, $("quiet-more"));
    const rows = shown.map((d) => {
      const fault = (d.faults || []).find((f) => f.kind === "link_fault");
      return {
        d, fault,
        lastSeen: d.last_seen_at ? `${when(d.last_seen_at)} (${elapsed(ageOf(d.last_seen_at))} ago)` : "Never",
        overdue: d.overdue_s == null ? "—" : elapsed(d.overdue_s + moved),
      };
    });
    refill("quiet", $("quiet"), rows.map((r) => [r.d.cid, r.d.area, r.lastSeen, r.overdue, r.fault?.id,
      r.fault?.incident_id, areaName(r.d.area)]), () => rows.map(({ d, fault, lastSeen, overdue }) =>
      h("tr", { tabindex: "-1", dataset: { cid: d.cid, key: `quiet-${d.cid}` } },
        h("th", { scope: "row", class: "num" }, d.cid, h("span", { class: "muted small" }, ` ${d.model || ""}`)),
        h("td", {}, areaName(d.area)),
        h("td", { class: "num" }, lastSeen),
        h("td", { class: "num overdue", dataset: { role: "overdue" } }, overdue),
        h("td", {}, fault ? incidentTag(fault.incident_id) : null),
        h("td", { class: "row-actions" }, fault ? clearButton(fault.id, d.cid) : null))));
  }

  function renderFaults() {
    const faults = faultsInOrder(H.technical);
    $("faults-title-count").textContent = ` (${faults.length})`;
    $("faults-empty").hidden = faults.length > 0;
    $("faults-table").hidden = faults.length === 0;
    const shown = capped("faults", faults, $("faults-more"));
    refill("faults", $("faults"), shown.map((a) => [a.id, a.version, a.kind, when(a.opened_at),
      a.incident_id, areaName(a.area), openIncidents().length]), () => shown.map((a) =>
      h("tr", { tabindex: "-1", class: `fault fault-${a.kind}`, dataset: { id: a.id, cid: a.cid, kind: a.kind, key: `fault-${a.id}` } },
        h("td", {}, h("span", { class: `fault-kind kind-${a.kind}` }, FAULT_LABEL[a.kind] || a.kind)),
        h("th", { scope: "row", class: "num" }, a.cid),
        h("td", {}, areaName(a.area)),
        h("td", { class: "num" }, when(a.opened_at), h("span", { class: "muted" }, ` · ${elapsed(ageOf(a.opened_at))}`)),
        h("td", {}, incidentTag(a.incident_id),
          a.source === "supervision" ? h("span", { class: "muted small" }, " by supervision") : null),
        h("td", { class: "row-actions" }, clearButton(a.id, a.cid)))));
  }

  function renderLinks() {
    const links = H.links || [];
    const list = $("links");
    const rows = links.map((l) => [l.name, l.kind, l.state, l.since, l.stale, l.stale ? l.updated_at : null]);
    refill("links", list, rows, () => links.length
      ? links.map((l) => {
        const level = linkLevel(l);
        return h("li", { class: `link link-${level}${l.stale ? " is-stale" : ""}`, dataset: { link: l.name, state: l.state, level } },
          h("span", { class: "link-dot", "aria-hidden": "true" }),
          h("span", { class: "link-name" }, l.name),
          h("span", { class: "link-kind" }, LINK_KIND[l.kind] || l.kind),
          h("span", { class: "link-state", dataset: { role: "state" } }, l.stale ? `${l.state} (last known)` : l.state),
          l.since ? h("span", { class: "link-since" }, `since ${when(l.since)}`) : null,
          l.stale ? h("span", { class: "link-stale" }, `no report since ${clockTime(l.updated_at)}`) : null,
          level !== "ok" ? hidden(level === "down" ? " (not working)" : " (not up yet)") : null);
      })
      : [h("li", { class: "link link-warn", dataset: { level: "none" } }, "The gateway has not reported its links yet.")]);
    // Out of the health view too: a line down means alarms over it cannot reach us.
    const bad = links.filter((l) => linkLevel(l) === "down");
    const banner = $("banner-links");
    banner.hidden = bad.length === 0;
    const sig = JSON.stringify(bad.map((l) => [l.name, l.state, l.stale]));
    if (banner.dataset.sig !== sig) {
      banner.dataset.sig = sig;
      banner.replaceChildren(h("span", { class: "banner-text" },
        h("strong", {}, bad.length === 1 ? "A device link is not working. " : "Device links are not working. "),
        bad.map((l) => l.stale
          ? `${LINK_KIND[l.kind] || l.kind} ${l.name}: the gateway has not reported it since ${clockTime(l.updated_at)}. `
          : `${LINK_KIND[l.kind] || l.kind} ${l.name} is ${l.state} since ${when(l.since)}. `),
        "Alarms over it may not reach Trygg. Call technical support."),
      h("a", { href: "#health", class: "btn btn-small btn-on-banner" }, "Show links"));
    }
  }

  // -- clearing by hand -----------------------------------------------------------------------

  function findAlarm(id) {
    const alarm = H.technical.find((a) => a.id === id);
    if (alarm) return alarm;
    for (const d of H.quiet) {
      const f = (d.faults || []).find((x) => x.id === id);
      if (f) return { id, cid: d.cid, kind: f.kind, area: d.area, opened_at: f.opened_at };
    }
    return null;
  }

  function openClear(id) {
    const alarm = findAlarm(id);
    if (!alarm) return;
    H.clearing = alarm;
    $("clear-title").textContent = `Clear technical alarm ${alarm.id}`;
    $("clear-context").textContent =
      `${FAULT_LABEL[alarm.kind] || alarm.kind} · unit ${alarm.cid} · ${areaName(alarm.area)} · since ${when(alarm.opened_at)}`;
    const note = $("clear-note");
    note.value = "";
    note.removeAttribute("aria-invalid");
    formError("");
    $("clear-dialog").showModal();
    note.focus();
  }

  function formError(text) {
    const e = $("clear-error");
    e.textContent = text || "";
    e.hidden = !text;
  }

  async function onClearSubmit(event) {
    event.preventDefault();
    const alarm = H.clearing;
    if (!alarm) return;
    const field = $("clear-note");
    const note = field.value.trim();
    if (!note) {
      field.setAttribute("aria-invalid", "true");
      formError("A note is required: write what was done or found.");
      field.focus();
      return;
    }
    const submit = $("clear-submit");
    submit.disabled = true;
    try {
      const res = await call(`/api/technical-alarms/${alarm.id}/clear`, { method: "POST", body: { note } });
      if (!res) return;
      if (res.ok) {
        H.technical = H.technical.filter((a) => a.id !== alarm.id);
        H.quiet = H.quiet.filter((d) => !(d.faults || []).some((f) => f.id === alarm.id));
        $("clear-dialog").close();
        toast(`Technical alarm ${alarm.id} cleared (${FAULT_LABEL[alarm.kind] || alarm.kind}, unit ${alarm.cid}).`);
        render();
        changed();
      } else if (res.network) {
        formError("Could not reach the server. Nothing was saved. Try again.");
      } else if (res.status === 409 || res.status === 404) {
        formError(`${errorText(res.body, "This technical alarm can no longer be cleared.")} ` +
          "(It changed meanwhile: cleared by someone else or restored by the unit. The lists are reloaded.)");
        changed();
      } else {
        formError(errorText(res.body, `The server refused (${res.status}).`));
      }
    } finally {
      submit.disabled = false;
    }
  }

  function onClearClosed() {
    const alarm = H.clearing;
    H.clearing = null;
    if (!alarm) return;
    const back = [...document.querySelectorAll('#health-view [data-action="clear"]')]
      .find((b) => Number(b.dataset.id) === alarm.id);
    (back || $("health-title")).focus();
  }

  // -- life -----------------------------------------------------------------------------------

  return {
    /** Once, at boot: the listeners of the view and the clear dialog. */
    wire() {
      $("health-view").addEventListener("click", (event) => {
        const button = event.target.closest("button[data-action]");
        if (!button) return;
        if (button.dataset.action === "clear") openClear(Number(button.dataset.id));
        else if (button.dataset.action === "show-all") {
          H.showAll[button.dataset.list] = true;
          render();
        }
      });
      $("clear-form").addEventListener("submit", onClearSubmit);
      $("clear-note").addEventListener("input", () => {
        $("clear-note").removeAttribute("aria-invalid");
        formError("");
      });
      $("clear-dialog").addEventListener("close", onClearClosed);
    },
    start() {
      H.running = true;
      reload();
      H.timers.push(setInterval(changed, SAFETY_REFETCH_MS));
      H.timers.push(setInterval(loadLinks, LINKS_POLL_MS));
      H.timers.push(setInterval(() => {
        H.sigs = {}; // the times shown moved on
        render();
        renderLinks();
      }, REDRAW_MS));
    },
    stop() {
      H.running = false;
      H.timers.forEach(clearInterval);
      H.timers = [];
      clearTimeout(H.reloadTimer);
      H.reloadTimer = null;
      H.seq += 1;
      H.linksSeq += 1;
      Object.assign(H, {
        loaded: false, incidents: [], technical: [], quiet: [], links: null, openIncidents: null,
        sigs: {}, showAll: { quiet: false, faults: false }, again: false,
      });
      for (const id of ["incident-banners", "incidents", "quiet", "faults", "links"]) $(id).replaceChildren();
      $("banner-links").hidden = true;
      delete $("banner-links").dataset.sig;
      $("health-count").hidden = true;
      $("health-status").textContent = "";
    },
    /** The stream said technical alarms or incidents changed. */
    changed,
    /** Reconnected: whatever happened meanwhile, look now. */
    reload: () => changed(),
  };
}
