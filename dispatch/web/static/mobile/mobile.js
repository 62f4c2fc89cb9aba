// Trygg on a responder's phone (/m/): sign in, see the team's open alarms live, and
// answer a call-out with big buttons: accept or decline, on my way, check in and check
// out when the unit cannot, the reason for a visit longer than 15 minutes, and, once
// they have accepted, opening the site's keyless lock (after a "Yes, open the door").
// Plain ES modules, no build step, nothing loaded from outside this server: phones on
// a closed network must work as well.
//
// The session is the HttpOnly cookie of POST /api/session, kept as on the dashboard
// (session.js): the page never holds its secret and keeps nothing in the browser's
// storage. Any 401, or the stream's "signed_out", ends it here too: back to the sign-in
// form, nothing else shown.
// The server decides what a responder may see (their own team's alarms, protected
// identities masked) and do; this page only offers the buttons that make sense now.

import { createActiveList } from "../activelist.js";
import { h } from "../dom.js";
import { clockTime, displayAddress, duration, errorText, isBehind, sameName } from "../model.js";
import { createSession } from "../session.js";
import { openStream } from "../stream.js";

// The stream brings every change of the team's alarms; it cannot say that one left the
// team (handed over at a shift change), so the list is fetched again now and then.
const REFETCH_MS = 20000;
const TICK_MS = 1000;
const OPEN_STATES = ["received", "called_out", "accepted", "on_site"];

const HOLDER_LABEL = {
  day_provider: "Day provider",
  night_organisation: "Night organisation",
  tfh: "TFH",
  alarm_centre: "Alarm centre",
  customer: "Customer",
};

// What each button sends, and what the page says once the server has agreed.
const ACTIONS = {
  accept: { body: {}, done: "Accepted: you are going. Nobody else is called." },
  decline: { body: {}, done: "Declined: the next in the call order is being called." },
  "on-my-way": { done: "On your way: the alarm centre can see it." },
  "check-in": { done: "Checked in: you are on site." },
  "check-out": { done: "Checked out: the visit is over." },
};

const $ = (id) => document.getElementById(id);

// -- state ----------------------------------------------------------------------------------

const S = {
  me: null, // {name, role, team}; null on the sign-in form
  stream: null,
  conn: "connecting", // connecting | live | reconnecting
  offsetMs: 0, // server time minus this phone's
  alarms: new Map(), // id -> view: open, or completed and still this responder's to finish
  gone: new Set(), // ids closed: a stale snapshot never brings one back
  keys: new Map(), // id -> key sets [{number, holder, holder_code}] | "loading" | "error"
  locks: new Map(), // id -> the site's keyless locks' cids (from the alarm's details)
  confirming: new Map(), // id -> the lock whose opening waits for "Yes, open the door"
  notes: new Map(), // id -> {kind: "ok" | "error", text}: the answer to the last button
  drafts: new Map(), // id -> the visit reason being typed (kept across live updates)
  busy: new Set(), // ids with a button's request on its way
  cards: new Map(), // id -> {el, sig}
  timers: [],
  renderQueued: false,
  lastTitle: "",
};

const serverNow = () => Date.now() + S.offsetMs;

// -- the session ------------------------------------------------------------------------------

const capitalised = (text) => text.charAt(0).toUpperCase() + text.slice(1);

const session = createSession({
  title: "Sign in — Trygg responder",
  me: () => S.me,
  start: startApp,
  stop: stopApp,
  say: notice,
  // A locked sign-in in the server's own words (the dashboard adds the time to try again).
  locked: (_res, body) =>
    `${capitalised(errorText(body, "too many failed sign-ins; try again later"))}.`,
});
const { call } = session;
const activeList = createActiveList(call);

// -- the list ---------------------------------------------------------------------------------

function startApp(me) {
  stopApp();
  S.me = me;
  $("signin").hidden = true;
  $("app").hidden = false;
  $("user-name").textContent = me.name;
  $("user-team").textContent = me.team ? `· ${me.team}` : "";
  const responder = me.role === "responder";
  $("list-view").hidden = !responder;
  $("not-responder").hidden = responder;
  $("conn").hidden = !responder;
  if (!responder) {
    $("not-responder-text").textContent =
      `You are signed in as ${me.role.replaceAll("_", " ")}. This page answers call-outs ` +
      "on a responder's phone; the alarm centre works in the dashboard.";
    document.title = "Trygg responder";
    return;
  }
  setConn("connecting");
  S.stream = openStream("/api/stream", {
    onOpen: () => {
      setConn("live");
      loadList();
    },
    onEvent: onStreamEvent,
    onDown: ({ attempt, retryInMs }) => setConn("reconnecting", { attempt, retryInMs }),
    onUnauthorized: session.ended,
  });
  loadList();
  S.timers.push(setInterval(() => { if (S.conn === "live") loadList(); }, REFETCH_MS));
  S.timers.push(setInterval(tick, TICK_MS));
  render();
}

function stopApp() {
  if (S.stream) S.stream.stop();
  S.stream = null;
  S.timers.forEach(clearInterval);
  S.timers = [];
  S.me = null;
  S.lastTitle = ""; // the sign-in form's title, or the next session's, is written next
  for (const map of [S.alarms, S.gone, S.keys, S.locks, S.confirming, S.notes, S.drafts, S.busy,
    S.cards]) map.clear();
  $("alarms").replaceChildren();
  $("banner-conn").hidden = true;
  $("notice").hidden = true;
  $("announcer").textContent = "";
}

function setConn(conn, info) {
  S.conn = conn;
  $("conn").className = `conn conn-${conn}`;
  const banner = $("banner-conn");
  if (conn === "live") {
    $("conn-text").textContent = "Live";
    banner.hidden = true;
  } else if (conn === "connecting") {
    $("conn-text").textContent = "Connecting…";
  } else {
    $("conn-text").textContent = "Offline";
    const secs = Math.max(1, Math.round((info?.retryInMs || 1000) / 1000));
    banner.replaceChildren(
      h("strong", {}, "No connection to the server. "),
      `The list may be out of date. Trying again in ${secs} s (attempt ${info?.attempt || 1}). `,
      h("button", { type: "button", class: "m-btn m-btn-small", onclick: () => S.stream?.kick() },
        "Try now"),
    );
    banner.hidden = false;
  }
}

function notice(text) {
  const n = $("notice");
  n.textContent = text || "";
  n.hidden = !text;
}

function onStreamEvent(name, data) {
  if (name === "hello") {
    if (data.server_time) S.offsetMs = Date.parse(data.server_time) - Date.now();
  } else if (name === "alarm" && data.alarm) {
    activeList.sawLive(data.alarm.id);
    upsert(data.alarm, true);
  } else if (name === "resync") {
    loadList();
  } else if (name === "signed_out") {
    session.ended();
  }
}

async function loadList() {
  const list = await activeList.fetch();
  if (!list || !S.me) return;
  S.offsetMs = list.offsetMs;
  for (const view of list.alarms) upsert(view, false);
  // Held but gone from the list: closed, or handed to another team.
  for (const id of [...S.alarms.keys()]) {
    if (list.lacks(id)) forget(id);
  }
  queueRender();
}

const callingMe = (v) => v.state === "called_out" && sameName(v.calling?.name, S.me?.name);
const acceptedByMe = (v) => sameName(v.accepted_by, S.me?.name);

/** Whether the list shows an alarm: every open one of the team, and a completed visit
 * of this responder's until the alarm centre closes it (a long visit needs its reason). */
function shown(v) {
  return OPEN_STATES.includes(v.state) || (v.state === "completed" && acceptedByMe(v));
}

function upsert(view, live) {
  if (S.gone.has(view.id)) return;
  const held = S.alarms.get(view.id);
  if (held && isBehind(view, held)) return;
  const { log: _log, keys, locks, ...plain } = view;
  if (keys) S.keys.set(plain.id, keys);
  if (locks) S.locks.set(plain.id, locks);
  if (plain.state === "closed") S.gone.add(plain.id);
  if (!shown(plain)) {
    forget(plain.id);
    queueRender();
    return;
  }
  S.alarms.set(plain.id, plain);
  if (!S.keys.has(plain.id)) loadKeys(plain.id);
  if (live && callingMe(plain) && !(held && callingMe(held))) {
    $("announcer").textContent = `Call-out for you: alarm ${plain.id}, ${whoOf(plain)}.`;
  }
  queueRender();
}

function forget(id) {
  S.alarms.delete(id);
  S.keys.delete(id);
  S.locks.delete(id);
  S.confirming.delete(id);
  S.notes.delete(id);
  S.drafts.delete(id);
}

/** The key numbers and who holds each set, from the alarm's details (once per alarm). */
async function loadKeys(id) {
  S.keys.set(id, "loading");
  const res = await call(`/api/alarms/${id}`);
  if (!res || !S.alarms.has(id)) return;
  if (res.ok) upsert(res.body, false);
  else S.keys.set(id, "error");
  queueRender();
}

// -- rendering --------------------------------------------------------------------------------

function queueRender() {
  if (S.renderQueued) return;
  S.renderQueued = true;
  queueMicrotask(() => {
    S.renderQueued = false;
    render();
  });
}

/** Call-outs for this responder first, then their own visits, then the newest call-outs. */
function rank(v) {
  if (callingMe(v)) return 0;
  if (acceptedByMe(v) && (v.state !== "completed" || v.needs_visit_reason)) return 1;
  return v.state === "completed" ? 3 : 2;
}

function compare(a, b) {
  const byRank = rank(a) - rank(b);
  if (byRank) return byRank;
  const ta = a.called_out_at || a.received_at || "";
  const tb = b.called_out_at || b.received_at || "";
  if (ta !== tb) return ta < tb ? 1 : -1;
  return b.id - a.id;
}

/** Build or refill only the cards whose alarm (or its keys, note or busy state) changed:
 * a reason being typed and the focused button survive a live update. */
function render() {
  if (!S.me) return;
  const list = $("alarms");
  const sorted = [...S.alarms.values()].sort(compare);
  const focused = document.activeElement;
  const focusCard = focused?.closest ? focused.closest("li.m-alarm") : null;
  const focusAction = focused?.dataset?.action;
  const caret = focused?.tagName === "TEXTAREA" ? [focused.selectionStart, focused.selectionEnd] : null;
  for (const [id, card] of S.cards) {
    if (!S.alarms.has(id)) {
      card.el.remove();
      S.cards.delete(id);
    }
  }
  sorted.forEach((view, index) => {
    let card = S.cards.get(view.id);
    if (!card) {
      card = { el: h("li", { class: "m-alarm", tabindex: "-1" }), sig: "" };
      S.cards.set(view.id, card);
    }
    const sig = JSON.stringify([view, S.keys.get(view.id), S.locks.get(view.id),
      S.confirming.get(view.id), S.notes.get(view.id), S.busy.has(view.id), S.me.name]);
    if (sig !== card.sig) {
      fillCard(card.el, view);
      card.sig = sig;
    }
    const at = list.children[index];
    if (at !== card.el) list.insertBefore(card.el, at || null);
  });
  if (focusCard && focusCard.isConnected && !focusCard.contains(document.activeElement)) {
    const again = focusAction && focusCard.querySelector(`[data-action="${focusAction}"]`);
    (again || focusCard).focus({ preventScroll: true });
    if (again && caret && again.tagName === "TEXTAREA") again.setSelectionRange(...caret);
  }
  $("empty").hidden = sorted.length > 0;
  list.hidden = sorted.length === 0;
  tick();
}

const whoOf = (v) => (v.unknown_device ? `unknown device ${v.cid}` : v.customer?.name || `unit ${v.cid}`);

function stateText(v) {
  if (callingMe(v)) return "Call-out for you";
  if (v.state === "received") return "New alarm";
  if (v.state === "called_out") return "Called out";
  if (v.state === "accepted") return acceptedByMe(v) ? "Accepted by you" : "Accepted";
  if (v.state === "on_site") return "On site";
  if (v.state === "completed") return "Visit over";
  return v.state;
}

function fillCard(li, v) {
  const forMe = callingMe(v);
  li.className = ["m-alarm", `state-${v.state}`, forMe && "is-for-me",
    acceptedByMe(v) && "is-mine", v.attention?.length && "is-attention"].filter(Boolean).join(" ");
  li.dataset.id = v.id;
  li.dataset.cid = v.cid;
  li.dataset.state = v.state;
  li.setAttribute("aria-labelledby", `m-alarm-${v.id}-who`);
  const since = v.called_out_at || v.received_at;
  const head = h("div", { class: "m-head" },
    h("span", { class: `badge badge-${forMe ? "for-me" : v.state}`, dataset: { role: "state" } },
      stateText(v)),
    h("span", { class: "m-since" },
      `${v.called_out_at ? "Called out" : "Received"} ${clockTime(since).slice(0, 5)}`,
      v.state !== "completed" && [", ",
        h("span", { class: "num", dataset: { role: "since", from: since } }, ""), " ago"]));
  li.replaceChildren(...[head, ...whoAndWhere(v), flags(v), statusLine(v), keysBox(v),
    doorBox(v), noteLine(v), actions(v)].filter(Boolean));
}

function whoAndWhere(v) {
  const site = v.site;
  const customer = v.customer;
  const where = site ? displayAddress(site) : "";
  const place = site ? [site.postal_code, site.city].filter(Boolean).join(" ") : "";
  return [
    h("h2", { class: "m-who", id: `m-alarm-${v.id}-who` },
      v.unknown_device ? "Unknown device: not in the register" : customer?.name || `Unit ${v.cid}`),
    h("p", { class: "m-code muted" },
      customer ? `Customer ${customer.code} · ` : "", `Unit ${v.cid} · #${v.id}`),
    site && h("p", { class: "m-address", dataset: { role: "address" } },
      where, place && h("span", { class: "muted" }, `, ${place}`)),
    site?.door_name && h("p", { class: "m-door", dataset: { role: "door" } },
      h("span", { class: "muted" }, "Door: "), site.door_name),
  ];
}

function flags(v) {
  const tags = [];
  const tag = (text, kind) => tags.push(h("li", { class: `tag${kind ? ` tag-${kind}` : ""}` }, text));
  if (v.attention?.includes("red_flag")) tag("Red flag: nobody on site", "danger");
  if (v.attention?.includes("no_answer")) tag("Nobody answered the call order", "danger");
  if (v.customer?.protected_identity || v.site?.protected) tag("Protected identity", "protected");
  if (v.site?.kind === "extra") tag("Extra address", "info");
  if (v.unknown_device) tag("Unknown device", "danger");
  if (v.priority > 0) tag(`Priority ${v.priority}`, "warn");
  if (v.repeat_count) tag(`Pressed again ${v.repeat_count}×`, "warn");
  if (v.reminder_count) tag(`Reminded ${v.reminder_count}×`, "warn");
  if (v.handed_over_at) tag(`Handed over ${clockTime(v.handed_over_at).slice(0, 5)}`, "info");
  return tags.length ? h("ul", { class: "tags", dataset: { role: "flags" }, "aria-label": "Flags" }, tags) : null;
}

const CHECKED_IN_BY = { unit: "on the unit", responder: "by phone" };

function statusLine(v) {
  const lines = [];
  const at = (iso) => clockTime(iso).slice(0, 5);
  if (v.calling && !callingMe(v)) {
    lines.push(`Calling ${v.calling.name || "the team's phone"} (${v.calling.step} of ${v.calling.of})`);
  } else if (callingMe(v)) {
    lines.push(`You are called (${v.calling.step} of ${v.calling.of})`);
  }
  if (v.accepted_by) {
    lines.push(`${acceptedByMe(v) ? "Accepted by you" : `Accepted by ${v.accepted_by}`} at ${at(v.accepted_at)}`);
  }
  if (v.on_way_at && v.state === "accepted") lines.push(`On the way since ${at(v.on_way_at)}`);
  if (v.on_site_at) {
    lines.push(`On site since ${at(v.on_site_at)}${CHECKED_IN_BY[v.kvittering] ? `, checked in ${CHECKED_IN_BY[v.kvittering]}` : ""}`);
  }
  if (v.completed_at) {
    lines.push(`Checked out ${at(v.completed_at)}` +
      (v.visit_seconds != null ? `: a visit of ${duration(v.visit_seconds)}` : ""));
  }
  if (v.visit_reason) lines.push(`Reason for the long visit: ${v.visit_reason}`);
  return lines.length
    ? h("ul", { class: "m-status", dataset: { role: "status" } }, lines.map((line) => h("li", {}, line)))
    : null;
}

function keysBox(v) {
  if (v.unknown_device || !v.customer) return null;
  const keys = S.keys.get(v.id);
  let body;
  if (keys === "error") body = h("p", { class: "muted" }, "The keys could not be loaded.");
  else if (!Array.isArray(keys)) body = h("p", { class: "muted" }, "Loading…");
  else if (!keys.length) body = h("p", { class: "muted" }, "No key sets are registered for this customer.");
  else {
    body = h("ul", { class: "keys", dataset: { role: "keys" } }, keys.map((k) => h("li", {},
      h("strong", {}, `Key ${k.number}`), " · ",
      `${HOLDER_LABEL[k.holder] || k.holder || "?"}${k.holder_code ? ` (${k.holder_code})` : ""}`)));
  }
  return h("section", { class: "m-keys", "aria-label": "Keys" }, h("h3", {}, "Keys"), body);
}

/**
 * The site's keyless lock, for the responder who accepted the alarm, while it is open:
 * opened remotely when they are at the door without a key. Opening a door is
 * consequential, so the button asks once more first, and Cancel takes the focus.
 */
function doorBox(v) {
  const locks = S.locks.get(v.id) || [];
  if (!locks.length || !acceptedByMe(v) || !["accepted", "on_site"].includes(v.state)) return null;
  const confirming = S.confirming.get(v.id);
  const busy = S.busy.has(v.id);
  const where = v.site ? displayAddress(v.site) : "the customer's door";
  const body = confirming
    ? [h("p", { class: "m-confirm", id: `m-door-${v.id}` },
        `Open the door at ${where} now (lock ${confirming})? It unlocks for whoever is at the door.`),
      h("div", { class: "m-buttons" },
        h("button", { type: "button", class: "m-btn m-btn-danger", disabled: busy,
          "aria-describedby": `m-door-${v.id}`, dataset: { action: "confirm-open-lock", cid: confirming } },
          "Yes, open the door"),
        h("button", { type: "button", class: "m-btn", disabled: busy,
          dataset: { action: "cancel-open-lock" } }, "Cancel"))]
    : [h("div", { class: "m-buttons" }, locks.map((cid) =>
        h("button", { type: "button", class: "m-btn", disabled: busy, dataset: { action: "open-lock", cid } },
          locks.length > 1 ? `Open the door (lock ${cid})…` : "Open the door…")))];
  return h("section", { class: "m-door", "aria-label": "Door", dataset: { role: "door-lock" } },
    h("h3", {}, locks.length > 1 ? "Keyless locks" : "Keyless lock"), ...body);
}

function noteLine(v) {
  const note = S.notes.get(v.id);
  if (!note) return null;
  return h("p", { class: `m-note m-note-${note.kind}`, role: note.kind === "error" ? "alert" : "status" },
    note.text);
}

function button(action, text, primary, id) {
  return h("button", {
    type: "button", class: `m-btn${primary ? " m-btn-primary" : ""}`,
    dataset: { action }, disabled: S.busy.has(id),
  }, text);
}

/** The buttons that make sense now, for this responder. */
function actions(v) {
  const id = v.id;
  const mine = acceptedByMe(v);
  const buttons = [];
  if (v.state === "received" || v.state === "called_out") {
    buttons.push(button("accept", "Accept", true, id));
    if (callingMe(v)) buttons.push(button("decline", "Decline", false, id));
  } else if (v.state === "accepted" && mine) {
    if (!v.on_way_at) buttons.push(button("on-my-way", "On my way", true, id));
    buttons.push(button("check-in", "Check in", !!v.on_way_at, id));
  } else if (v.state === "on_site" && (mine || !v.accepted_by)) {
    buttons.push(button("check-out", "Check out", true, id));
  } else if (v.state === "completed" && v.needs_visit_reason && mine) {
    return reasonForm(v);
  }
  if (!buttons.length) return null;
  const hint = v.state === "accepted" && mine
    ? h("p", { class: "help" }, "Check in on the unit as usual; use Check in here when the unit cannot.")
    : null;
  return h("div", { class: "m-actions" }, h("div", { class: "m-buttons" }, buttons), hint);
}

function reasonForm(v) {
  const fieldId = `m-reason-${v.id}`;
  const field = h("textarea", {
    id: fieldId, name: "reason", rows: "3", maxlength: "2000", required: true,
    dataset: { role: "reason", action: "reason" }, // the action: focus survives a rebuild
  });
  field.value = S.drafts.get(v.id) || "";
  field.addEventListener("input", () => S.drafts.set(v.id, field.value));
  return h("form", { class: "m-reason", dataset: { id: v.id } },
    h("label", { for: fieldId }, "The visit took longer than 15 minutes: why?"),
    h("p", { class: "help" }, "A visit is paid as a standard 15 minutes; a longer one needs a reason."),
    field,
    h("button", { type: "submit", class: "m-btn m-btn-primary", disabled: S.busy.has(v.id) },
      "Send reason"));
}

/** Every second: the time since each call-out, and the title. */
function tick() {
  const now = serverNow();
  for (const el of document.querySelectorAll('#alarms [data-role="since"]')) {
    const text = duration((now - Date.parse(el.dataset.from)) / 1000);
    if (el.textContent !== text) el.textContent = text;
  }
  const forMe = [...S.alarms.values()].filter(callingMe).length;
  const title = forMe ? `(${forMe}) Call-out for you — Trygg` : "Trygg responder";
  if (title !== S.lastTitle && S.me) {
    document.title = title;
    S.lastTitle = title;
  }
}

// -- actions ----------------------------------------------------------------------------------

function failureText(res, action, view) {
  if (res.network) return "Could not reach the server. Nothing was saved. Check the network and try again.";
  if (res.status === 404) return "This alarm is no longer your team's: it was handed over or closed.";
  if (res.status === 409 && action === "accept" && view?.accepted_by && !acceptedByMe(view)) {
    return `Already accepted by someone else (${view.accepted_by}): you need not go.`;
  }
  if (res.status === 409) {
    return `${capitalised(errorText(res.body, "not possible now"))}. The alarm changed meanwhile: see above.`;
  }
  return errorText(res.body, `The server refused (${res.status}). Try again.`);
}

async function runAction(id, action, path, body, done) {
  if (S.busy.has(id)) return;
  S.busy.add(id);
  S.notes.delete(id);
  notice("");
  queueRender();
  let res;
  try {
    res = await call(`/api/alarms/${id}/${path}`, { method: "POST", body });
  } finally {
    S.busy.delete(id);
  }
  if (!res) return;
  if (res.ok) {
    S.notes.set(id, { kind: "ok", text: done });
    if (action === "visit-reason") S.drafts.delete(id);
    upsert(res.body, false);
  } else {
    // Refused: show the alarm as it is now, and say why beside it.
    const now = res.status === 409 ? await call(`/api/alarms/${id}`) : null;
    if (now?.ok) upsert(now.body, false);
    const text = failureText(res, action, now?.ok ? now.body : null);
    if (res.status === 404) {
      S.gone.add(id);
      forget(id);
      notice(text);
    } else {
      S.notes.set(id, { kind: "error", text });
    }
  }
  queueRender();
}

/** The unlock command goes out through the outbox; the lock reports the opening itself. */
async function openLock(id, cid) {
  if (S.busy.has(id)) return;
  S.busy.add(id);
  S.notes.delete(id);
  queueRender();
  let res;
  try {
    res = await call(`/api/alarms/${id}/open-lock`, { method: "POST", body: { cid } });
  } finally {
    S.busy.delete(id);
  }
  if (!res) return;
  S.confirming.delete(id);
  if (res.ok) {
    S.notes.set(id, { kind: "ok",
      text: `Unlock sent to lock ${res.body.lock} at ${clockTime(res.body.requested_at).slice(0, 5)}: the door opens in a moment.` });
  } else if (res.status === 404) {
    S.gone.add(id);
    forget(id);
    notice("This alarm is no longer your team's: it was handed over or closed.");
  } else {
    S.notes.set(id, { kind: "error", text: res.network
      ? "Could not reach the server. Nothing was sent. Try again."
      : `${capitalised(errorText(res.body, `the server refused (${res.status})`))}.` });
  }
  queueRender();
}

function onListClick(event) {
  const target = event.target.closest("button[data-action]");
  if (!target) return;
  const li = target.closest("li.m-alarm");
  if (!li) return;
  const id = Number(li.dataset.id);
  const action = target.dataset.action;
  if (action === "open-lock") {
    S.confirming.set(id, target.dataset.cid);
    S.notes.delete(id);
    queueRender();
    requestAnimationFrame(() => li.querySelector('[data-action="cancel-open-lock"]')?.focus());
    return;
  }
  if (action === "cancel-open-lock") {
    S.confirming.delete(id);
    queueRender();
    return;
  }
  if (action === "confirm-open-lock") {
    openLock(id, target.dataset.cid);
    return;
  }
  const spec = ACTIONS[action];
  if (spec) runAction(id, action, action, spec.body, spec.done);
}

function onListSubmit(event) {
  const form = event.target.closest("form.m-reason");
  if (!form) return;
  event.preventDefault();
  const id = Number(form.dataset.id);
  const reason = form.querySelector("textarea").value.trim();
  if (!reason) {
    S.notes.set(id, { kind: "error", text: "Write why the visit took longer than 15 minutes." });
    queueRender();
    return;
  }
  runAction(id, "visit-reason", "visit-reason", { reason }, "Reason sent. Thank you.");
}

// -- start ------------------------------------------------------------------------------------

function wire() {
  session.wire();
  $("alarms").addEventListener("click", onListClick);
  $("alarms").addEventListener("submit", onListSubmit);
  // A phone drops the network and sleeps: reconnect at once when either ends.
  window.addEventListener("offline", () => S.stream?.kick());
  window.addEventListener("online", () => S.stream?.kick());
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible" || !S.me) return;
    if (S.conn !== "live") S.stream?.kick();
    else loadList();
  });
}

wire();
session.resume();
