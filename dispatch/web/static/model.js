// The queue's rules, free of the DOM: ordering, merging live updates, time and text.

export const AWAITING_CHECK_IN = ["received", "called_out", "accepted"];
export const OPEN_STATES = [...AWAITING_CHECK_IN, "on_site"];
const STATE_RANK = { received: 0, called_out: 1, accepted: 2, on_site: 3, completed: 4, closed: 5 };

export const STATE_LABEL = {
  received: "Received",
  called_out: "Called out",
  accepted: "Accepted",
  on_site: "On site",
  completed: "Completed",
  closed: "Closed",
};

export const ROUTE_LABEL = {
  day_provider: "day provider",
  night_patrol: "night patrol",
  unknown_device: "unknown device",
  no_team: "no team",
};

export const SHIFT_LABEL = { day: "Day shift", night: "Night shift" };

/** How presence (or none) was confirmed: the alarm's `kvittering`. */
export const KVITTERING_LABEL = {
  unit: "On the unit",
  responder: "By the responder's phone",
  phone: "By phone to the operator",
  false_alarm: "False alarm",
};

/** A visit is paid as a standard 15 minutes; a longer one needs a reason (004 §6.1). */
export const STANDARD_VISIT_S = 15 * 60;

/**
 * What the operator must act on now (the alarm's `attention`), most serious first: a
 * short mark for the queue row and what to do, in words, never by colour alone.
 */
export function attentionItems(v) {
  const flags = v.attention || [];
  const items = [];
  if (flags.includes("red_flag")) {
    const minutes = v.red_flag_at && v.called_out_at
      ? Math.round((Date.parse(v.red_flag_at) - Date.parse(v.called_out_at)) / 60000) : null;
    items.push({
      flag: "red_flag", mark: "Red flag",
      text: minutes ? `No check-in ${minutes} min after the call-out.` : "No check-in an hour after the call-out.",
    });
  }
  if (flags.includes("no_answer")) {
    items.push({
      flag: "no_answer", mark: "No answer",
      text: "Nobody of the call order answered: call the team.",
    });
  }
  return items;
}

/** "Calling 2/6: Ahmed Yusuf" while the call chain runs, else "". */
export function callingText(v) {
  const c = v.calling;
  if (!c) return "";
  return `Calling ${c.step}/${c.of}: ${c.name || `the team's phone${c.phone ? ` ${c.phone}` : ""}`}`;
}

/**
 * The same rule as dispatch/views.py urgency_key: nobody responding yet (no team, or a
 * flag the operator must act on, first), then the nearest 30-minute mark. Keep the two
 * in step: live updates re-sort with this.
 */
export function urgencyKey(v) {
  const state = v.state;
  const openRank = AWAITING_CHECK_IN.includes(state) ? 0 : state === "on_site" ? 1 : 2;
  const mustAct = v.team == null || (v.attention || []).length > 0;
  const noTeam = mustAct && openRank === 0 ? 0 : 1;
  const deadline = v.deadline_at || v.received_at || "";
  return [openRank, noTeam, deadline, -(v.priority || 0), -v.id];
}

// Views are never changed once held (an update brings a new object), so each one's key
// is worked out once, not at every one of the ~16,000 comparisons of a 1,500-alarm sort.
const keys = new WeakMap();

function keyOf(v) {
  let key = keys.get(v);
  if (key === undefined) {
    key = urgencyKey(v);
    keys.set(v, key);
  }
  return key;
}

export function compareUrgency(a, b) {
  const ka = keyOf(a);
  const kb = keyOf(b);
  for (let i = 0; i < ka.length; i++) {
    if (ka[i] < kb[i]) return -1;
    if (ka[i] > kb[i]) return 1;
  }
  return 0;
}

/**
 * How far an alarm has come. An alarm only moves forward (states, repeat and reminder
 * counts never go back), so a snapshot that is behind the one we hold is stale: one that
 * crossed a list fetch in flight, say. Equal progress: the newer snapshot wins.
 */
export function progress(v) {
  // The server counts every change to an alarm; older servers did not, hence the rest.
  if (Number.isInteger(v.version)) return [v.version];
  return [
    STATE_RANK[v.state] ?? 0,
    v.repeat_count || 0,
    v.reminder_count || 0,
    v.priority || 0,
    v.accepted_by ? 1 : 0,
  ];
}

export function isBehind(candidate, held) {
  const a = progress(candidate);
  const b = progress(held);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return a[i] < b[i];
  }
  return false;
}

/** The alarms the operator still has to see: open ones and completed ones not yet closed. */
export function isActive(v) {
  return v.state !== "closed";
}

export function isOpen(v) {
  return OPEN_STATES.includes(v.state);
}

// -- time ---------------------------------------------------------------------------------

const clockFmt = new Intl.DateTimeFormat("sv-SE", {
  timeZone: "Europe/Stockholm", hour: "2-digit", minute: "2-digit", second: "2-digit",
});
const dateTimeFmt = new Intl.DateTimeFormat("sv-SE", {
  timeZone: "Europe/Stockholm", year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit",
});

/** hh:mm:ss in Swedish local time (alarm centres run on Europe/Stockholm). */
export function clockTime(iso) {
  if (!iso) return "";
  return clockFmt.format(new Date(iso));
}

export function dateTime(iso) {
  if (!iso) return "";
  return dateTimeFmt.format(new Date(iso));
}

/** mm:ss, or h:mm:ss past an hour. */
export function duration(totalSeconds) {
  const s = Math.max(0, Math.floor(totalSeconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const mm = String(m).padStart(2, "0");
  const ss = String(sec).padStart(2, "0");
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

export const WARN_BELOW_S = 10 * 60;

/**
 * The countdown to the 30-minute mark. `now` is the server's time (ms since epoch).
 * level: "ok" | "warn" (under 10 min) | "overdue".
 */
export function countdown(deadlineIso, now) {
  const remaining = (Date.parse(deadlineIso) - now) / 1000;
  if (remaining <= 0) {
    return { level: "overdue", text: `+${duration(-remaining)}`, remaining };
  }
  // Round up: 29:59.4 left reads 30:00 only for the first instant, never 00:00 while time is left.
  return { level: remaining < WARN_BELOW_S ? "warn" : "ok", text: duration(Math.ceil(remaining)), remaining };
}

// -- text ---------------------------------------------------------------------------------

/** The extra site's address carries the "Extra:" prefix (000); the card shows a marker instead. */
export function displayAddress(site) {
  if (!site || !site.address) return "";
  if (site.kind === "extra") return site.address.replace(/^\s*extra\s*:?\s*/i, "");
  return site.address;
}

/** FastAPI errors: {"detail": "text"} or {"detail": [{"msg": ...}]}. */
/** Whether two names are one person's: the call order's (the config) and an account's
 * may differ in case and spacing, as the server's `same_person` allows. */
export function sameName(name, other) {
  if (name == null || other == null) return false;
  const norm = (text) => text.trim().split(/\s+/).join(" ").toLowerCase();
  return norm(name) === norm(other);
}

export function errorText(body, fallback) {
  if (!body) return fallback;
  const d = body.detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d) && d.length) {
    return d.map((e) => {
      const field = Array.isArray(e.loc) ? e.loc[e.loc.length - 1] : "";
      if (e.type === "string_too_short" && field) return `The ${field} must not be empty.`;
      return e.msg || String(e);
    }).join(" ");
  }
  return fallback;
}
