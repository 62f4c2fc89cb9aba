// Reports, for alarm managers and admins: response times per provider and team over a
// period, with the deviating ones marked in words, two charts drawn by the server (SVG,
// shown as images: nothing to fetch from outside), and the month's alarm visits with the
// long ones and their reasons (GET /api/reports/..., each also as CSV).

import { h } from "./dom.js";
import { errorText } from "./model.js";

const $ = (id) => document.getElementById(id);
const ZONE = "Europe/Stockholm"; // report dates are Swedish dates (dispatch/reports.py)
const CLOCK_WAIT_MS = 3000; // how long the first defaults wait for the server's time
const NONE = "—";

const zoneDate = new Intl.DateTimeFormat("en-CA", {
  timeZone: ZONE, year: "numeric", month: "2-digit", day: "2-digit",
});

const pad = (n) => String(n).padStart(2, "0");

/**
 * The last full calendar month before the instant `nowMs`, by the date in Sweden:
 * {from: "2026-10-01", to: "2026-10-31", month: "2026-10"}. Only a form's default.
 */
export function lastFullMonth(nowMs) {
  const p = Object.fromEntries(zoneDate.formatToParts(new Date(nowMs)).map((x) => [x.type, x.value]));
  let year = Number(p.year);
  let month = Number(p.month) - 1;
  if (month === 0) {
    year -= 1;
    month = 12;
  }
  const days = new Date(Date.UTC(year, month, 0)).getUTCDate(); // day 0 of the next month
  const ym = `${year}-${pad(month)}`;
  return { from: `${ym}-01`, to: `${ym}-${pad(days)}`, month: ym };
}

/**
 * Seconds as minutes:seconds ("31:05", "75:00"), rounded up as the server words them:
 * 1800.4 s is over 30 minutes and must not read as 30:00. None: a dash.
 */
export function minutesSeconds(seconds) {
  if (seconds == null) return NONE;
  const s = Math.ceil(seconds);
  return `${Math.floor(s / 60)}:${pad(s % 60)}`;
}

/** 0.875 -> "87.5 %", floored so a share just under the target never reads as it. */
export function percent(share) {
  if (share == null) return NONE;
  return `${Math.floor(share * 1000 + 1e-9) / 10} %`;
}

const deviationText = (row) => `⚠ deviates: ${(row.deviations || []).join("; ")}`;

/**
 * deps: call(path) -> {ok, status, body, network} or null once the session ended;
 * serverNow() -> ms; clockKnown() -> a promise kept once the server's time is known.
 */
export function createReports({ call, serverNow, clockKnown }) {
  const R = { running: false, seq: 0, visitsSeq: 0 };

  function period() {
    return { from: $("rt-from").value, to: $("rt-to").value };
  }

  function periodQuery() {
    const { from, to } = period();
    return new URLSearchParams({ from, to });
  }

  function updateLinks() {
    const q = periodQuery();
    q.set("format", "csv");
    $("rt-csv").href = `/api/reports/response-times?${q}`;
    $("rt-csv").setAttribute("download", `trygg-response-times-${period().from}-${period().to}.csv`);
    const month = $("av-month").value;
    $("av-csv").href = `/api/reports/alarm-visits?${new URLSearchParams({ month, format: "csv" })}`;
    $("av-csv").setAttribute("download", `trygg-alarm-visits-${month}.csv`);
  }

  /** The form's fields: the last full month by the server's clock, unless already set. */
  async function fillDefaults() {
    if ($("rt-from").value && $("rt-to").value && $("av-month").value) return;
    await Promise.race([clockKnown(), new Promise((done) => setTimeout(done, CLOCK_WAIT_MS))]);
    const last = lastFullMonth(serverNow());
    if (!$("rt-from").value) $("rt-from").value = last.from;
    if (!$("rt-to").value) $("rt-to").value = last.to;
    if (!$("av-month").value) $("av-month").value = last.month;
    updateLinks();
  }

  function refusal(res) {
    return res.network ? "Cannot reach the server. Try again."
      : `The report was refused: ${errorText(res.body, `error ${res.status}`)}`;
  }

  // -- response times ------------------------------------------------------------------

  async function loadResponseTimes() {
    const { from, to } = period();
    const status = $("rt-status");
    if (!from || !to) {
      status.textContent = "Choose the first and the last day of the period.";
      return;
    }
    if (from > to) {
      status.textContent = "The first day must not be after the last.";
      return;
    }
    const seq = ++R.seq;
    updateLinks();
    status.textContent = "Loading…";
    showCharts(null);
    const res = await call(`/api/reports/response-times?${periodQuery()}`);
    if (res === null || seq !== R.seq || !R.running) return;
    if (!res.ok) {
      status.textContent = refusal(res);
      $("rt-table").hidden = true;
      $("rt-deviating").hidden = true;
      return;
    }
    const report = res.body;
    const rows = report.rows || [];
    $("rt-rows").replaceChildren(...rows.map(timesRow));
    $("rt-overall").replaceChildren(rows.length ? overallRow(report.overall || {}) : "");
    $("rt-table").hidden = rows.length === 0;
    showDeviating(report);
    status.textContent = rows.length
      ? `${report.from} to ${report.to}: ${rows.length} ${rows.length === 1 ? "team" : "teams"}, ` +
        `${report.overall?.alarms ?? 0} alarms called out.`
      : `${report.from} to ${report.to}: no alarms were called out in this period.`;
    showCharts(report);
  }

  function cells(r) {
    return [
      h("td", { class: "num", dataset: { col: "alarms" } }, String(r.alarms ?? 0)),
      h("td", { class: "num", dataset: { col: "answer_median" } }, minutesSeconds(r.answer_median_s)),
      h("td", { class: "num", dataset: { col: "answer_p90" } }, minutesSeconds(r.answer_p90_s)),
      h("td", { class: "num", dataset: { col: "arrival_median" } }, minutesSeconds(r.arrival_median_s)),
      h("td", { class: "num", dataset: { col: "arrival_p90" } }, minutesSeconds(r.arrival_p90_s)),
      h("td", { class: "num", dataset: { col: "within_30" } }, percent(r.within_30_min_share)),
      h("td", { class: "num", dataset: { col: "visit_median" } }, minutesSeconds(r.visit_median_s)),
    ];
  }

  function timesRow(r) {
    return h("tr", {
      class: r.deviates ? "is-deviating" : null,
      dataset: { provider: r.provider || "", team: r.team || "", deviates: r.deviates ? "true" : "false" },
    },
    h("th", { scope: "row" }, r.provider || "No provider"),
    h("td", {}, r.team || NONE),
    ...cells(r),
    h("td", { class: "follow-up", dataset: { col: "follow_up" } },
      r.deviates ? h("strong", { class: "deviates" }, deviationText(r)) : "Within the targets"));
  }

  function overallRow(o) {
    return h("tr", { class: "overall", dataset: { provider: "", team: "" } },
      h("th", { scope: "row", colspan: "2" }, "All providers"),
      ...cells(o),
      h("td", {}, ""));
  }

  /** Above the table, what to follow up, per provider (or per team if the report has none). */
  function showDeviating(report) {
    const box = $("rt-deviating");
    const deviating = (report.providers || report.rows || []).filter((r) => r.deviates);
    if (!deviating.length) {
      box.hidden = true;
      box.replaceChildren();
      return;
    }
    const n = deviating.length;
    box.replaceChildren(
      h("p", {}, h("strong", {}, `⚠ ${n} ${n === 1 ? "provider deviates" : "providers deviate"}`),
        " and need following up:"),
      h("ul", {}, deviating.map((r) => h("li", { dataset: { provider: r.provider || "" } },
        h("strong", {}, r.provider || "No provider"), r.team ? ` (${r.team})` : "", ": ",
        (r.deviations || []).join("; ")))));
    box.hidden = false;
  }

  function showCharts(report) {
    const charts = [
      ["chart-arrivals", "response-times", "Arrival times per provider"],
      ["chart-within", "within-30-min", "Share within 30 minutes per provider and week"],
    ];
    for (const [id, name, what] of charts) {
      const img = $(id);
      if (!report || !(report.rows || []).length) {
        img.hidden = true;
        img.removeAttribute("src");
        continue;
      }
      const q = new URLSearchParams({ from: report.from, to: report.to });
      img.alt = `Chart: ${what}, ${report.from} to ${report.to}.`;
      img.hidden = false;
      img.src = `/api/reports/charts/${name}.svg?${q}`;
    }
  }

  // -- alarm visits --------------------------------------------------------------------

  async function loadVisits() {
    const month = $("av-month").value;
    const status = $("av-status");
    if (!month) {
      status.textContent = "Choose a month.";
      return;
    }
    const seq = ++R.visitsSeq;
    updateLinks();
    status.textContent = "Loading…";
    const res = await call(`/api/reports/alarm-visits?${new URLSearchParams({ month })}`);
    if (res === null || seq !== R.visitsSeq || !R.running) return;
    if (!res.ok) {
      status.textContent = refusal(res);
      $("av-table").hidden = true;
      return;
    }
    const rows = res.body.rows || [];
    $("av-rows").replaceChildren(...rows.map(visitsRow));
    $("av-table").hidden = rows.length === 0;
    const visits = rows.reduce((sum, r) => sum + (r.visits || 0), 0);
    const missing = rows.reduce((sum, r) => sum + (r.long_visits || []).filter((v) => !v.reason).length, 0);
    const apart = res.body.visits_without_provider
      ? ` ${res.body.visits_without_provider} visit(s) at units without a provider are not billed.` : "";
    status.textContent = (rows.length
      ? `${res.body.month}: ${visits} ${visits === 1 ? "visit" : "visits"}` +
        (missing ? `, ${missing} long ${missing === 1 ? "visit lacks its" : "visits lack their"} reason.` : ".")
      : `${res.body.month}: no alarm visits.`) + apart;
  }

  function visitsRow(r) {
    const long = r.long_visits || [];
    return h("tr", { dataset: { provider: r.provider } },
      h("th", { scope: "row" }, r.provider),
      h("td", { class: "num", dataset: { col: "visits" } }, String(r.visits)),
      h("td", { class: "num", dataset: { col: "standard_minutes" } }, String(r.standard_minutes)),
      h("td", { dataset: { col: "long_visits" } }, long.length
        ? h("ul", { class: "long-visits" }, long.map((v) => h("li", { dataset: { alarm: v.alarm_id } },
            h("span", { class: "num" }, `Alarm ${v.alarm_id}`), " · ",
            h("span", { class: "num" }, minutesSeconds(v.visit_s)), " · ",
            v.reason
              ? h("span", { class: "long-reason" }, v.reason)
              : h("strong", { class: "reason-missing" }, "⚠ reason missing"))))
        : h("span", { class: "muted" }, "None")));
  }

  return {
    wire() {
      $("rt-form").addEventListener("submit", (event) => {
        event.preventDefault();
        loadResponseTimes();
      });
      $("av-form").addEventListener("submit", (event) => {
        event.preventDefault();
        loadVisits();
      });
      $("rt-form").addEventListener("input", updateLinks);
      $("av-form").addEventListener("input", updateLinks);
      for (const id of ["chart-arrivals", "chart-within"]) {
        $(id).addEventListener("error", () => {
          const img = $(id);
          if (!img.getAttribute("src")) return;
          img.hidden = true;
          $("rt-status").textContent += " A chart could not be loaded; try Show again.";
        });
      }
    },
    /** The view is shown: the last full month, once per session (Show looks again). */
    async show() {
      if (R.running) return;
      R.running = true;
      await fillDefaults();
      if (!R.running) return;
      loadResponseTimes();
      loadVisits();
    },
    stop() {
      R.running = false;
      R.seq += 1;
      R.visitsSeq += 1;
      $("rt-form").reset();
      $("av-form").reset();
      $("rt-rows").replaceChildren();
      $("rt-overall").replaceChildren();
      $("av-rows").replaceChildren();
      $("rt-table").hidden = true;
      $("av-table").hidden = true;
      $("rt-deviating").hidden = true;
      $("rt-status").textContent = "";
      $("av-status").textContent = "";
      showCharts(null);
      updateLinks();
    },
  };
}
