// Trygg dashboard: sign-in, the live alarm queue and the operator's actions, with the
// views of the other roles (device health, orders, users, the audit log) beside it.
// Plain ES modules, no build step, nothing loaded from outside this server.
//
// The session is an HttpOnly cookie set by POST /api/session (session.js, shared with the
// phone page): the page never holds its secret and keeps nothing about it in the
// browser's storage. Any 401, or the stream's "signed_out", means the session ended:
// back to the sign-in page.

import {
  AWAITING_CHECK_IN, KVITTERING_LABEL, ROUTE_LABEL, SHIFT_LABEL, STANDARD_VISIT_S, STATE_LABEL,
  attentionItems, callingText, clockTime, compareUrgency, countdown, dateTime, displayAddress,
  duration, errorText, isBehind, isOpen,
} from "./model.js";
import { h, hidden } from "./dom.js";
import { createActiveList } from "./activelist.js";
import { createAudit } from "./audit.js";
import { createHealth } from "./health.js";
import { OWNER_LABEL, createOrders } from "./orders.js";
import { createReports } from "./reports.js";
import { VIEWS, mayDo, mayView, roleText, viewsOf } from "./roles.js";
import { createSession, currentSession } from "./session.js";
import { openStream } from "./stream.js";
import { createUsers } from "./users.js";

const SOUND_KEY = "trygg.sound";
const OLD_TOKEN_KEY = "trygg.token"; // where versions that took a pasted token kept it
const SAFETY_REFETCH_MS = 60000; // belt and braces next to the live feed
const READY_POLL_MS = 15000;
const NEW_HIGHLIGHT_MS = 12000;
const BUILD_PER_SLICE = 150; // new cards per task: a full queue's first load in slices
const HISTORY_PAGE = 50;

const $ = (id) => document.getElementById(id);

// -- state ----------------------------------------------------------------------------------

const S = {
  me: null, // who is signed in: {name, role, team, kind, expires_at}; null on the sign-in page
  views: [], // the views the role may use, in tab order
  stream: null,
  conn: "connecting", // connecting | live | reconnecting
  offsetMs: 0, // server time minus client time
  clock: null, // {known: promise kept once offsetMs is the server's, keep()}, per sign-in
  alarms: new Map(), // id -> view, the active queue (open + completed)
  gone: new Map(), // id -> closed view, so a stale snapshot never brings one back
  cards: new Map(), // id -> { el, sig }
  fresh: new Map(), // id -> time it arrived live (highlight)
  timers: [],
  renderQueued: false,
  details: null, // id of the alarm open in the details dialog
  detailsView: null, // the last view of it, as shown
  // A protected identity revealed in the details dialog: {id, data}. Memory only, for
  // that dialog: never in the queue, the history or storage; gone when either closes.
  reveal: null,
  // The door lock in the details dialog: {id, confirming: cid | null, busy, sent, error}.
  // The confirm step and the answer outlive the dialog's re-renders on live updates.
  lock: null,
  history: { cursor: null, seq: 0 }, // the closed list: next page, and which opening it is
  sound: localStorage.getItem(SOUND_KEY) === "on",
  audio: null,
  lastTitle: "",
};

const serverNow = () => Date.now() + S.offsetMs;
let health = null; // the device-health view (health.js), made in wire()
let users = null; // the users view (users.js), for admins
let audit = null; // the audit log view (audit.js)
let orders = null; // the order board (orders.js), for TFH and the alarm centre
let reports = null; // response times and alarm visits (reports.js), for alarm managers

/** A promise kept once the server's time is known (the stream's hello or a list). */
function newServerClock() {
  let keep;
  const known = new Promise((resolve) => { keep = resolve; });
  return { known, keep };
}

function setServerTime(offsetMs) {
  S.offsetMs = offsetMs;
  S.clock?.keep();
}

// -- the session ------------------------------------------------------------------------------

// Tabs of one browser share the session cookie: one signing in or out tells the others,
// which then ask the server (the message carries nothing but "look again").
const tabs = "BroadcastChannel" in window ? new BroadcastChannel("trygg.session") : null;
const tellOtherTabs = () => tabs?.postMessage("session-changed");

const session = createSession({
  title: "Sign in — Trygg",
  me: () => S.me,
  start: startApp,
  stop: stopApp,
  say: (text) => toast(text, "error"),
  forbidden: recheckSession,
  changed: tellOtherTabs,
});
const { call } = session;
const activeList = createActiveList(call);

/**
 * Ask again whom the cookie signs in, and follow: a 403 may mean an admin changed this
 * user's role meanwhile; another tab of this browser (same cookie) signed in or out.
 */
let rechecking = false;
async function recheckSession() {
  if (rechecking) return;
  rechecking = true;
  try {
    const { status, me } = await currentSession();
    if (status === 401) {
      session.ended();
    } else if (me && (!S.me || me.name !== S.me.name || me.role !== S.me.role || me.team !== S.me.team)) {
      const sameName = S.me?.name === me.name;
      session.enter(me);
      toast(sameName ? `Your role is now ${roleText(me)}.` : `Signed in as ${me.name} (in another tab).`);
    }
  } finally {
    rechecking = false;
  }
}

// -- the console ------------------------------------------------------------------------------

function startApp(me) {
  stopApp();
  S.me = me;
  S.views = viewsOf(me.role);
  S.clock = newServerClock();
  $("signin").hidden = true;
  $("app").hidden = false;
  showUser();
  const queue = mayView(me.role, "queue");
  $("open-count-box").hidden = !queue;
  $("sound-toggle").hidden = !queue;
  for (const view of VIEWS) $(`view-${view}`).hidden = !S.views.includes(view);
  setConn("connecting");
  // Every role reads the stream: it says when the session ends, and brings the alarms
  // and device health the role may see.
  S.stream = openStream("/api/stream", {
    onOpen: () => {
      setConn("live");
      if (queue) loadList();
      if (mayView(me.role, "health")) health.reload();
    },
    onEvent: onStreamEvent,
    onDown: ({ attempt, retryInMs }) => setConn("reconnecting", { attempt, retryInMs }),
    onUnauthorized: session.ended,
  });
  if (queue) {
    loadList();
    S.timers.push(setInterval(() => { if (S.conn === "live") loadList(); }, SAFETY_REFETCH_MS));
  }
  if (mayView(me.role, "health")) health.start();
  if (mayView(me.role, "orders")) orders.start();
  checkReady();
  S.timers.push(setInterval(tick, 500));
  S.timers.push(setInterval(checkReady, READY_POLL_MS));
  showView(true);
}

function stopApp() {
  if (S.stream) S.stream.stop();
  S.stream = null;
  S.timers.forEach(clearInterval);
  S.timers = [];
  health.stop();
  users.stop();
  audit.stop();
  orders.stop();
  reports.stop();
  S.me = null;
  S.views = [];
  S.lastTitle = ""; // the sign-in form's title, or the next session's, is written next
  S.alarms.clear();
  S.gone.clear();
  S.cards.clear();
  S.fresh.clear();
  S.reveal = null;
  S.lock = null;
  S.detailsView = null;
  $("queue").replaceChildren();
  resetHistory();
  for (const d of document.querySelectorAll("dialog[open]")) d.close();
  $("details-body").replaceChildren();
  $("banner-conn").hidden = true;
  $("banner-ready").hidden = true;
}

function showUser() {
  $("user-name").textContent = S.me ? S.me.name : "";
  $("user-role").textContent = roleText(S.me);
  $("user").title = S.me?.expires_at ? `Signed in until ${dateTime(S.me.expires_at).slice(0, 16)}` : "";
}

function setConn(conn, info) {
  S.conn = conn;
  const box = $("conn");
  box.className = `conn conn-${conn}`;
  const banner = $("banner-conn");
  if (conn === "live") {
    $("conn-text").textContent = "Live";
    banner.hidden = true;
  } else if (conn === "connecting") {
    $("conn-text").textContent = "Connecting…";
  } else {
    $("conn-text").textContent = "Reconnecting…";
    const secs = Math.max(1, Math.round((info?.retryInMs || 1000) / 1000));
    banner.replaceChildren(
      h("strong", {}, "Live updates interrupted. "),
      `The queue below may be out of date. Reconnecting in ${secs} s (attempt ${info?.attempt || 1}). `,
      h("button", { type: "button", class: "btn btn-small btn-on-banner", onclick: () => S.stream?.kick() },
        "Reconnect now"),
    );
    banner.hidden = false;
  }
  updateTitle();
}

function onStreamEvent(name, data) {
  if (name === "hello") {
    // First estimate; the list fetch that follows refines it (it times the round trip).
    if (data.server_time) setServerTime(Date.parse(data.server_time) - Date.now());
  } else if (name === "alarm" && data.alarm) {
    activeList.sawLive(data.alarm.id);
    upsert(data.alarm, true);
  } else if (name === "health") {
    health.changed(); // "look again", maybe hundreds a second in a power cut: reload, spaced out
  } else if (name === "resync") {
    loadList();
    health.changed();
  } else if (name === "signed_out") {
    session.ended();
  }
}

async function loadList() {
  const list = await activeList.fetch();
  if (!list || !S.me) return;
  setServerTime(list.offsetMs);
  for (const view of list.alarms) upsert(view, false);
  // Held but gone from the list: closed meanwhile (by someone else, or while we were away).
  for (const id of [...S.alarms.keys()]) {
    if (list.lacks(id)) S.alarms.delete(id);
  }
  queueRender();
}

function upsert(view, live) {
  if (S.gone.has(view.id)) return;
  const held = S.alarms.get(view.id);
  if (held && isBehind(view, held)) return;
  const { log: _log, ...plain } = view;
  if (!isOpen(plain) && S.reveal?.id === plain.id) S.reveal = null; // closed: the identity goes
  if (plain.state === "closed") {
    S.alarms.delete(plain.id);
    S.gone.set(plain.id, plain);
    if (S.gone.size > 5000) S.gone.delete(S.gone.keys().next().value); // a long shift
    if (held && live) toast(`Alarm ${plain.id} closed${plain.closed_by ? ` by ${plain.closed_by}` : ""}.`);
  } else {
    S.alarms.set(plain.id, plain);
    if (!held && live) announceNew(plain);
    else if (held && live) announceFlags(plain, held);
  }
  if (S.details === plain.id) refreshDetails();
  queueRender();
}

/** A flag newly raised on an alarm (no answer, a red flag): said aloud, and the tone. */
function announceFlags(view, held) {
  const raised = attentionItems(view).filter((item) => !(held.attention || []).includes(item.flag));
  if (!raised.length) return;
  const who = view.customer?.name || `unit ${view.cid}`;
  $("announcer").textContent = `Alarm ${view.id}, ${who}: ${raised.map((i) => `${i.mark}. ${i.text}`).join(" ")}`;
  if (S.sound) chime();
}

function announceNew(view) {
  S.fresh.set(view.id, Date.now());
  const who = view.unknown_device ? `Unknown device ${view.cid}` : view.customer?.name || `unit ${view.cid}`;
  const team = view.team ? `, ${view.team.name}` : ", no team";
  $("announcer").textContent = `New alarm: ${who}${team}.`;
  if (S.sound) chime();
}

// -- rendering ----------------------------------------------------------------------------------

function queueRender() {
  if (S.renderQueued) return;
  S.renderQueued = true;
  // A microtask, not requestAnimationFrame: a background tab must still update its title.
  queueMicrotask(() => {
    S.renderQueued = false;
    render();
  });
}

/**
 * Put the cards in urgency order, building or refilling only those whose alarm changed:
 * a live update of a 1,500-alarm queue touches one card and moves a few.
 * Building many new cards at once (the first load of a full queue) goes in slices, most
 * urgent first, so the top of the queue shows at once and the page stays responsive.
 */
function render() {
  const list = $("queue");
  const sorted = [...S.alarms.values()].sort(compareUrgency);
  const focused = document.activeElement;
  const focusCard = focused && focused.closest ? focused.closest("li.alarm") : null;
  const focusAction = focused?.dataset?.action;

  for (const [id, card] of S.cards) {
    if (!S.alarms.has(id)) {
      card.el.remove();
      S.cards.delete(id);
    }
  }
  // Nobody watches a hidden tab: build everything at once there, since its timers are
  // throttled and slices would trickle in for minutes.
  let budget = document.hidden ? Infinity : BUILD_PER_SLICE;
  let done = true;
  for (let index = 0; index < sorted.length; index++) {
    const view = sorted[index];
    let card = S.cards.get(view.id);
    if (!card) {
      if (budget-- <= 0) {
        done = false; // the cards from here on follow in the next slice
        break;
      }
      card = { el: h("li", { class: "alarm", tabindex: "-1" }), view: null, sig: "", clock: null };
      S.cards.set(view.id, card);
    }
    // Every live update and list fetch stores a new object; only a changed one is refilled.
    if (card.view !== view) {
      card.view = view;
      const sig = JSON.stringify(view);
      if (card.sig !== sig) {
        card.clock = fillCard(card.el, view);
        card.sig = sig;
      }
    }
    const at = list.children[index];
    if (at !== card.el) list.insertBefore(card.el, at || null);
  }
  if (!done) setTimeout(queueRender, 0);

  // Keep keyboard focus where it was when a card was rebuilt or moved.
  if (focusCard && focusCard.isConnected && !focusCard.contains(document.activeElement)) {
    const again = focusAction && focusCard.querySelector(`[data-action="${focusAction}"]`);
    (again || focusCard).focus({ preventScroll: true });
  }

  const empty = sorted.length === 0;
  $("queue-empty").hidden = !empty;
  list.hidden = empty;
  tick();
}

function fillCard(li, v) {
  const awaiting = AWAITING_CHECK_IN.includes(v.state);
  const noTeam = !v.team && !v.unknown_device;
  const flags = attentionItems(v);
  li.className = [
    "alarm", `state-${v.state}`,
    v.unknown_device && "is-unknown", noTeam && "is-noteam", flags.length && "has-attention",
    S.fresh.has(v.id) && Date.now() - S.fresh.get(v.id) < NEW_HIGHLIGHT_MS && "is-new",
  ].filter(Boolean).join(" ");
  li.dataset.id = v.id;
  li.dataset.cid = v.cid;
  li.dataset.state = v.state;
  li.setAttribute("aria-labelledby", `alarm-${v.id}-name`);

  // 1. the clock
  let clock;
  let countdownParts = null;
  if (awaiting && v.deadline_at) {
    const label = h("span", { class: "clock-label", dataset: { role: "clock-label" } }, "To 30-min mark");
    const value = h("span", { class: "clock-value countdown", dataset: { role: "countdown" } }, "--:--");
    clock = h("div", { class: "col clock", dataset: { deadline: v.deadline_at } },
      label, value, h("span", { class: "clock-sub" }, `Received ${clockTime(v.received_at)}`));
    countdownParts = { deadline: v.deadline_at, label, value };
  } else if (v.state === "on_site") {
    clock = h("div", { class: "col clock clock-done" },
      h("span", { class: "clock-label" }, "On site since"),
      h("span", { class: "clock-value" }, clockTime(v.on_site_at).slice(0, 5)),
      h("span", { class: "clock-sub" },
        v.arrival_seconds != null ? `Arrived in ${duration(v.arrival_seconds)}` : `Received ${clockTime(v.received_at)}`));
  } else {
    clock = h("div", { class: "col clock clock-done" },
      h("span", { class: "clock-label" }, "Checked out"),
      h("span", { class: "clock-value" }, clockTime(v.completed_at).slice(0, 5)),
      v.visit_seconds != null && h("span", { class: "clock-sub", dataset: { role: "visit" } },
        `Visit ${duration(v.visit_seconds)}`),
      h("span", { class: "clock-sub" }, "Visit over: close the alarm"));
  }

  // 2. who and where
  const site = v.site;
  const who = h("div", { class: "col who" },
    v.unknown_device && h("p", { class: "unknown-flag" },
      h("strong", {}, "Unknown device"), ` · CID ${v.cid}`),
    h("h3", { class: "customer", id: `alarm-${v.id}-name` },
      v.unknown_device ? "Not in the register" : v.customer?.name || `Unit ${v.cid}`,
      v.customer?.protected_identity && h("span", { class: "tag tag-protected" }, "Protected")),
    site && h("p", { class: "address" },
      site.kind === "extra" && h("span", { class: "tag tag-extra", title: "Extra alarm at a second address" }, "Extra"),
      displayAddress(site),
      (site.postal_code || site.city) && h("span", { class: "muted" },
        `, ${[site.postal_code, site.city].filter(Boolean).join(" ")}`)),
    site?.door_name && h("p", { class: "door" }, h("span", { class: "muted" }, "Door: "), site.door_name),
    v.unknown_device
      ? h("p", { class: "act-hint" }, "No customer and no team. Phone someone to go, then record who answered.")
      : h("p", { class: "cid muted" }, `Unit ${v.cid} · #${v.id}`));

  // 3. responsible team
  const team = h("div", { class: "col team" },
    v.team
      ? [
          h("p", { class: "team-name" }, v.team.name),
          v.team.phone && h("p", { class: "team-phone" },
            h("a", { href: `tel:${v.team.phone.replace(/\s+/g, "")}` }, v.team.phone)),
          h("p", { class: "shift muted" },
            [SHIFT_LABEL[v.shift] || v.shift, ROUTE_LABEL[v.route_reason]].filter(Boolean).join(" · ")),
        ]
      : [
          h("p", { class: "team-name team-none" }, "No responsible team"),
          h("p", { class: "shift muted" },
            [SHIFT_LABEL[v.shift], ROUTE_LABEL[v.route_reason] || v.route_reason].filter(Boolean).join(" · ")),
          noTeam && h("p", { class: "act-hint" }, "Find a responder and record who answered."),
        ]);

  // 4. state: first what the operator must act on, in words (never by colour alone)
  const tags = [];
  if (v.needs_visit_reason) {
    tags.push(h("span", { class: "tag tag-warn tag-wrap", dataset: { role: "needs-reason" } },
      "Visit over 15 min: reason needed"));
  }
  if (v.coordinator_at) {
    tags.push(h("span", { class: "tag tag-warn", dataset: { role: "coordinator" } },
      `Coordinator told ${clockTime(v.coordinator_at).slice(0, 5)}`));
  }
  if (v.handed_over_at) {
    tags.push(h("span", { class: "tag", dataset: { role: "handed-over" } },
      `Handed over ${clockTime(v.handed_over_at).slice(0, 5)}`));
  }
  if (v.kvittering && !awaiting) {
    tags.push(h("span", { class: "tag", dataset: { role: "kvittering" } },
      `Kvittering: ${(KVITTERING_LABEL[v.kvittering] || v.kvittering).toLowerCase()}`));
  }
  if (v.reminder_count) tags.push(h("span", { class: "tag tag-warn" }, `Reminded ${v.reminder_count}×`));
  if (v.repeat_count) tags.push(h("span", { class: "tag tag-repeat" }, `Pressed again ${v.repeat_count}×`));
  if (v.priority > 0) tags.push(h("span", { class: "tag" }, `Priority ${v.priority}`));
  const status = h("div", { class: "col status" },
    flags.map(attentionFlag),
    h("span", { class: `badge badge-${v.state}`, dataset: { role: "state" } }, STATE_LABEL[v.state] || v.state),
    v.calling && h("p", { class: "calling", dataset: { role: "calling" } }, callingText(v)),
    v.accepted_by && h("p", { class: "responder" },
      h("span", { class: "muted" }, "Answered by "), h("strong", {}, v.accepted_by),
      v.accepted_at && h("span", { class: "muted" }, ` · ${clockTime(v.accepted_at).slice(0, 5)}`)),
    v.on_way_at && awaiting && h("p", { class: "small", dataset: { role: "on-way" } },
      `On the way since ${clockTime(v.on_way_at).slice(0, 5)}`),
    !v.accepted_by && awaiting && v.called_out_at &&
      h("p", { class: "muted small" }, `Called out ${clockTime(v.called_out_at).slice(0, 5)}`),
    tags.length > 0 && h("p", { class: "tags" }, tags));

  // 5. actions
  const actions = h("div", { class: "col actions" }, actionButtons(v, false));

  li.replaceChildren(clock, who, team, status, actions);
  return countdownParts;
}

/** "⚠ No answer — Nobody of the call order answered: call the team." */
function attentionFlag(item) {
  return h("p", { class: `attention attention-${item.flag}`, dataset: { role: "attention", flag: item.flag } },
    h("strong", { class: "attention-mark" }, `${item.flag === "red_flag" ? "⚑" : "⚠"} ${item.mark}`),
    " ", h("span", { class: "attention-text" }, item.text));
}

/** The call-out button's words: the next of a running chain, or the order over again. */
function callOutLabel(v) {
  if (v.calling) return "Call the next";
  if ((v.attention || []).includes("no_answer")) return "Call the order again";
  return v.state === "received" ? "Call out" : "Call out again";
}

/** The buttons of one alarm that the signed-in role may use (an alarm manager: Details only). */
function actionButtons(v, inDetails) {
  const label = hidden(` alarm ${v.id}`);
  const buttons = [];
  const may = (action) => mayDo(S.me?.role, action);
  const canAccept = may("accept") && (v.state === "received" || v.state === "called_out");
  // A responder answers for themselves (the server records their name): no dialog.
  const self = S.me?.role === "responder";
  if (canAccept) {
    buttons.push(h("button", { type: "button", class: "btn btn-primary", dataset: { action: "accept" } },
      self ? "Accept" : "Accept…", label.cloneNode(true)));
  }
  if (may("close") && v.state === "completed") {
    buttons.push(h("button", { type: "button", class: "btn btn-primary", dataset: { action: "close" } },
      "Close alarm", label.cloneNode(true)));
  }
  if (may("call-out") && v.team && AWAITING_CHECK_IN.includes(v.state)) {
    buttons.push(h("button", { type: "button", class: "btn", dataset: { action: "call-out" } },
      callOutLabel(v), label.cloneNode(true)));
  }
  if (inDetails && may("decline") && v.state === "called_out" && v.team) {
    buttons.push(h("button", { type: "button", class: "btn", dataset: { action: "decline" } },
      "Declined…", label.cloneNode(true)));
  }
  if (may("visit-reason") && v.needs_visit_reason) {
    buttons.push(h("button", { type: "button", class: "btn", dataset: { action: "visit-reason" } },
      "Visit reason…", label.cloneNode(true)));
  }
  if (may("kvittering") && isOpen(v)) {
    buttons.push(h("button", { type: "button", class: "btn", dataset: { action: "kvittering" } },
      "Phone kvittering…", label.cloneNode(true)));
  }
  if (inDetails && may("false-alarm") && isOpen(v)) {
    buttons.push(h("button", { type: "button", class: "btn btn-danger-quiet", dataset: { action: "false-alarm" } },
      "False alarm…", label.cloneNode(true)));
  }
  if (!inDetails && may("details")) {
    buttons.push(h("button", { type: "button", class: "btn btn-quiet", dataset: { action: "details" } },
      "Details", label.cloneNode(true)));
  }
  return buttons;
}

/** Countdowns, highlight expiry, counts and the title: every half second. */
function tick() {
  const now = serverNow();
  let overdue = 0;
  for (const [id, card] of S.cards) {
    const clock = card.clock;
    if (clock) {
      const c = countdown(clock.deadline, now);
      if (clock.value.textContent !== c.text) clock.value.textContent = c.text;
      const labelText = c.level === "overdue" ? "Overdue" : "To 30-min mark";
      if (clock.label.textContent !== labelText) clock.label.textContent = labelText;
      card.el.classList.toggle("level-warn", c.level === "warn");
      card.el.classList.toggle("level-overdue", c.level === "overdue");
      if (c.level === "overdue") overdue += 1;
    }
    const arrived = S.fresh.get(id);
    if (arrived && Date.now() - arrived > NEW_HIGHLIGHT_MS) {
      S.fresh.delete(id);
      card.el.classList.remove("is-new");
    }
  }
  S.overdue = overdue;
  updateTitle();
}

function updateTitle() {
  const open = [...S.alarms.values()].filter(isOpen).length;
  const toClose = S.alarms.size - open;
  $("open-count").textContent = String(open);
  $("open-count-label").textContent = open === 1 ? "open alarm" : "open alarms";
  $("open-count").parentElement.classList.toggle("has-open", open > 0);
  $("open-count").parentElement.title = toClose ? `${toClose} completed, waiting to be closed` : "";
  if ($("app").hidden || !S.me) return;
  // Most telling first: a background tab shows only the start of its title.
  const counts = S.overdue ? `${open} · ${S.overdue} overdue` : `${open}`;
  const prefix = S.conn === "live" ? "" : "Reconnecting · ";
  const title = S.views.includes("queue")
    ? `${prefix}(${counts}) Trygg alarm queue`
    : `${prefix}${VIEW_TITLE[currentView()] || ""} — Trygg`;
  if (title !== S.lastTitle) {
    document.title = title;
    S.lastTitle = title;
  }
}

// -- actions ----------------------------------------------------------------------------------

let returnFocus = null; // { id, action } to restore after a dialog

function onQueueClick(event) {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const li = button.closest("li.alarm");
  if (!li) return;
  runAction(Number(li.dataset.id), button.dataset.action, button);
}

function runAction(id, action, button) {
  returnFocus = { id, action };
  if (action === "accept" && S.me?.role === "responder") { // answers for themselves
    simpleAction(id, "accept", button, (v) => `You accepted alarm ${v.id}: nobody else is called.`);
  } else if (action === "accept") openAccept(id);
  else if (action === "kvittering") openKvittering(id);
  else if (action === "details") openDetails(id);
  else if (action === "decline") openDecline(id);
  else if (action === "false-alarm") openFalseAlarm(id);
  else if (action === "visit-reason") openVisitReason(id);
  else if (action === "close") simpleAction(id, "close", button, "Alarm closed.");
  else if (action === "call-out") simpleAction(id, "call-out", button, calledText);
}

/** After a call-out: whom the chain calls now. */
function calledText(v) {
  return callingText(v) ? `Alarm ${v.id}: ${callingText(v)}.` : `Alarm ${v.id} called out again.`;
}

/** The alarm as last seen: in the queue, or (closed) the one in the details dialog. */
function viewOf(id) {
  return S.alarms.get(id) || (S.detailsView?.id === id ? S.detailsView : null) || S.gone.get(id) || null;
}

function restoreFocus() {
  if (!returnFocus || !S.me) return;
  const card = S.cards.get(returnFocus.id);
  const closed = document.querySelector(`#history-list li[data-id="${returnFocus.id}"] button`);
  if (card && card.el.isConnected) {
    const b = card.el.querySelector(`[data-action="${returnFocus.action}"]`) ||
      card.el.querySelector("[data-action]");
    (b || card.el).focus();
  } else if (closed) {
    closed.focus();
  } else {
    $("queue-title").focus();
  }
  returnFocus = null;
}

/** POST an action on an alarm and show the alarm as it is now; null once signed out. */
async function post(id, action, body) {
  const res = await call(`/api/alarms/${id}/${action}`, { method: "POST", body });
  if (res?.ok) upsert(res.body, false);
  return res;
}

function failureText(res) {
  if (res.network) return "Could not reach the server. Nothing was saved. Try again.";
  if (res.status === 409) {
    return `${errorText(res.body, "Not possible in the alarm's current state.")} (The alarm changed meanwhile: check the queue.)`;
  }
  return errorText(res.body, `The server refused (${res.status}).`);
}

async function simpleAction(id, action, button, done) {
  if (button) button.disabled = true;
  try {
    const res = await post(id, action, action === "call-out" ? undefined : {});
    if (res?.ok) toast(typeof done === "function" ? done(res.body) : done);
    else if (res) toast(failureText(res), "error");
  } finally {
    if (button && button.isConnected) button.disabled = false;
  }
}

function contextLine(v) {
  const who = v.unknown_device ? `Unknown device ${v.cid}` : v.customer?.name || `Unit ${v.cid}`;
  const where = v.site ? ` · ${displayAddress(v.site)}` : "";
  const team = v.team ? ` · ${v.team.name} ${v.team.phone || ""}` : " · no team";
  return `Alarm ${v.id}: ${who}${where}${team}`;
}

function formError(id, text) {
  const e = $(id);
  e.textContent = text || "";
  e.hidden = !text;
}

// -- the dialogs of one line ----------------------------------------------------------------
//
// Accept, decline, phone kvittering, false alarm and visit reason each record one line
// (a name or a reason) on one alarm. Their elements share ids by the dialog's name:
// `${name}-dialog`, -form, -context, -error and -submit, and the field named here. Each
// says what an empty field is told (none: it may be empty), the common reasons to offer
// as buttons, what it sends and what it says once the server has it.

const TEXT_DIALOGS = {
  accept: {
    field: "accept-name",
    missing: "Write the name of the person who answered.",
    send: (id, responder) => post(id, "accept", { responder }),
    done: (id, responder) => toast(`Recorded: ${responder} answered alarm ${id}.`),
  },
  kvitt: {
    field: "kvitt-reason",
    missing: "A reason is required: write why the alarm is closed without kvittering on the unit.",
    reasons: [
      "Handled by phone with the customer; no visit needed.",
      "False alarm: the customer confirmed on the phone that all is well.",
      "Staff were on site; kvittering on the unit failed.",
    ],
    send: (id, reason) => post(id, "phone-kvittering", { reason }),
    done: (id) => toast(`Alarm ${id} closed by phone kvittering.`),
  },
  decline: {
    field: "decline-name",
    missing: "Write the name of the person who declined.",
    send: (id, responder) => post(id, "decline", { responder }),
    done: declinedToast,
  },
  false: {
    field: "false-reason",
    missing: null,
    send: (id, reason) => post(id, "false-alarm", { reason }),
    done: (id) => toast(`Alarm ${id} closed as a false alarm; the team is told to stand down.`),
  },
  visit: {
    field: "visit-reason",
    missing: "A reason is required: write why the visit took longer than 15 minutes.",
    reasons: [
      "The customer had fallen and needed help up and a check for injuries.",
      "Waited with the customer for the ambulance.",
      "The customer was confused and could not be left alone until calm.",
    ],
    send: (id, reason) => post(id, "visit-reason", { reason }),
    done: (id) => toast(`Visit reason saved for alarm ${id}.`),
  },
};

/** Open dialog `name` for alarm `id`: its context line, no error, the field holding `value`. */
function openTextDialog(name, id, context, value = "") {
  const { field: fieldId, reasons } = TEXT_DIALOGS[name];
  const dialog = $(`${name}-dialog`);
  const field = $(fieldId);
  dialog.dataset.id = id;
  $(`${name}-context`).textContent = context;
  formError(`${name}-error`, "");
  field.value = value;
  field.removeAttribute("aria-invalid");
  if (reasons && !dialog.querySelector(".chips")) field.before(reasonChips(field, reasons));
  dialog.showModal();
  field.focus();
}

/**
 * Send what dialog `name` holds: an empty field that must not be is marked and said;
 * otherwise the dialog closes once the server has it, or says why not and stays open.
 */
async function submitTextDialog(name, event) {
  event.preventDefault();
  const { field: fieldId, missing, send, done } = TEXT_DIALOGS[name];
  const dialog = $(`${name}-dialog`);
  const id = Number(dialog.dataset.id);
  const field = $(fieldId);
  const value = field.value.trim();
  if (!value && missing) {
    field.setAttribute("aria-invalid", "true");
    formError(`${name}-error`, missing);
    field.focus();
    return;
  }
  const submit = $(`${name}-submit`);
  submit.disabled = true;
  try {
    const res = await send(id, value);
    if (res?.ok) {
      dialog.close();
      done(id, value, res.body);
    } else if (res) {
      formError(`${name}-error`, failureText(res));
    }
  } finally {
    submit.disabled = false;
  }
}

/** Put `text` in a dialog's field, as if typed (its error clears), and go on there. */
function fillWith(field, text) {
  field.value = text;
  field.dispatchEvent(new Event("input"));
  field.focus();
}

/**
 * The call order as buttons that fill the field of dialog `name` with a name, and as the
 * field's suggestions; with `markCalling`, the one the chain calls now is marked.
 */
function showCallOrder(name, v, { markCalling }) {
  const field = $(TEXT_DIALOGS[name].field);
  const picks = $(`${name}-callorder`);
  const names = $(`${name}-names`);
  picks.replaceChildren();
  names.replaceChildren();
  const order = v.call_order || [];
  const now = markCalling && v.calling && order.length ? (v.calling.step - 1) % order.length : -1;
  order.forEach((member, index) => {
    picks.append(h("li", {},
      h("button", { type: "button", class: "pick", onclick: () => fillWith(field, member.name) },
        h("span", { class: "pick-order" }, `${index + 1}`),
        h("span", { class: "pick-name" }, member.name,
          index === now && h("span", { class: "tag pick-now" }, "Calling now")),
        member.phone && h("span", { class: "pick-phone" }, member.phone))));
    names.append(h("option", { value: member.name }));
  });
  $(`${name}-callorder-wrap`).hidden = !order.length;
}

/** Buttons that each put a common reason in `field`. */
function reasonChips(field, reasons) {
  return h("div", { class: "chips", role: "group", "aria-label": "Common reasons" },
    reasons.map((text) => h("button", { type: "button", class: "chip", onclick: () => fillWith(field, text) },
      text)));
}

function openAccept(id) {
  const v = S.alarms.get(id);
  if (!v) return;
  showCallOrder("accept", v, { markCalling: false });
  openTextDialog("accept", id, contextLine(v));
}

function openKvittering(id) {
  const v = S.alarms.get(id);
  if (v) openTextDialog("kvitt", id, contextLine(v));
}

function openDecline(id) {
  const v = viewOf(id);
  if (!v) return;
  showCallOrder("decline", v, { markCalling: true });
  // Most often the one the chain is calling now declined.
  openTextDialog("decline", id, [contextLine(v), callingText(v)].filter(Boolean).join(" · "),
    v.calling?.name || "");
  $("decline-name").select();
}

/** After a decline: whom the chain calls now, or that nobody of the call order is left. */
function declinedToast(id, responder, view) {
  const next = callingText(view);
  const outOfNames = (view.attention || []).includes("no_answer");
  toast(`Recorded: ${responder} declined alarm ${id}. ` +
    (next ? `${next}.` : outOfNames ? "Nobody of the call order is left: call the team." : ""),
  outOfNames ? "error" : "info");
}

function openFalseAlarm(id) {
  const v = viewOf(id);
  if (v) openTextDialog("false", id, contextLine(v));
}

function openVisitReason(id) {
  const v = viewOf(id);
  if (!v) return;
  $("visit-help").textContent = (v.visit_seconds != null
    ? `The visit took ${duration(v.visit_seconds)} (checked in ${clockTime(v.on_site_at).slice(0, 5)}, ` +
      `out ${clockTime(v.completed_at).slice(0, 5)}). `
    : "") + `Visits are paid as a standard ${STANDARD_VISIT_S / 60} minutes; a longer one needs a reason ` +
    "for the reimbursement. It goes into the audit trail.";
  openTextDialog("visit", id, contextLine(v));
}

// -- details ------------------------------------------------------------------------------

async function openDetails(id) {
  if (S.details !== id) {
    S.reveal = null;
    S.lock = null;
  }
  S.details = id;
  const dialog = $("details-dialog");
  $("details-title").textContent = `Alarm ${id}`;
  $("details-context").textContent = "";
  $("details-body").replaceChildren(h("p", { class: "muted" }, "Loading…"));
  $("details-actions").replaceChildren();
  if (!dialog.open) dialog.showModal();
  await refreshDetails();
}

let detailsSeq = 0;
async function refreshDetails() {
  const id = S.details;
  if (id == null) return;
  const seq = ++detailsSeq;
  const res = await call(`/api/alarms/${id}`);
  if (!res || seq !== detailsSeq || S.details !== id) return;
  if (!res.ok) {
    S.reveal = null;
    $("details-body").replaceChildren(h("p", { class: "form-error" }, failureText(res)));
    return;
  }
  renderDetails(res.body);
}

/**
 * A protected identity in the details: masked like everywhere, and for an operator on an
 * open alarm the audited reveal. What it shows lives in S.reveal for this dialog only.
 */
function protectedSection(v) {
  if (!v.customer?.protected_identity) return null;
  if (!isOpen(v) || (S.reveal && S.reveal.id !== v.id)) S.reveal = null;
  const shown = S.reveal?.data;
  if (shown) {
    const site = shown.site || {};
    return h("section", { class: "details-section protected is-revealed", "aria-labelledby": "protected-title" },
      h("h3", { id: "protected-title" }, "Protected identity ",
        h("span", { class: "tag tag-revealed" }, "Revealed")),
      h("dl", { class: "facts", dataset: { role: "revealed" } },
        fact("Name", shown.customer?.name),
        fact("Address", [site.address, site.postal_code].filter(Boolean).join(", ") || "—"),
        fact("Door name", site.door_name || "—")),
      h("p", { class: "help" },
        `Revealed at ${clockTime(shown.revealed_at)} and recorded in the audit log. `,
        "Shown only here, while this alarm is open: it is not kept when you close these details."),
      h("button", { type: "button", class: "btn btn-small", dataset: { action: "hide-identity" } },
        "Hide protected identity"));
  }
  const may = mayDo(S.me?.role, "reveal") && isOpen(v);
  return h("section", { class: "details-section protected", "aria-labelledby": "protected-title" },
    h("h3", { id: "protected-title" }, "Protected identity"),
    h("p", { class: "help" }, may
      ? "Name, address and door name are masked. Show them only if you need them to handle this alarm: " +
        "who, when and which alarm are recorded in the audit log."
      : "Name, address and door name are masked (skyddade personuppgifter)."),
    h("p", { id: "reveal-error", class: "form-error", role: "alert", hidden: true }),
    may && h("button", { type: "button", class: "btn btn-danger", dataset: { action: "reveal" } },
      "Show protected identity"));
}

async function revealIdentity(button) {
  const id = S.details;
  if (id == null) return;
  button.disabled = true;
  let res;
  try {
    res = await call(`/api/alarms/${id}/reveal`, { method: "POST" });
  } finally {
    button.disabled = false;
  }
  if (!res || S.details !== id) return; // the dialog closed meanwhile: show nothing
  if (res.ok) {
    S.reveal = { id, data: res.body };
    if (S.detailsView) renderDetails(S.detailsView);
    $("details-body").querySelector('[data-action="hide-identity"]')?.focus();
  } else {
    const error = $("reveal-error");
    if (error) {
      error.textContent = failureText(res);
      error.hidden = false;
    }
    if (res.status === 409) refreshDetails();
  }
}

const KEY_HOLDER = { ...OWNER_LABEL, customer: "Customer" };

/**
 * Getting in: the customer's key sets (number, and who holds each now) and, for an
 * operator or the alarm's responder on an open alarm, the site's keyless locks to open
 * remotely. Opening a door is consequential, so the button asks once more first.
 */
function accessSection(v) {
  const keys = v.keys || [];
  const locks = v.locks || [];
  if (S.lock && S.lock.id !== v.id) S.lock = null;
  const keyList = keys.length
    ? h("ul", { class: "keys", dataset: { role: "keys" } }, keys.map((k) => h("li", {},
        h("strong", {}, `Key ${k.number}`), " · ",
        `${KEY_HOLDER[k.holder] || k.holder || "?"}${k.holder_code ? ` (${k.holder_code})` : ""}`)))
    : h("p", { class: "muted" }, "No key sets are registered for this customer.");
  return h("section", { class: "details-section access", "aria-labelledby": "access-title" },
    h("h3", { id: "access-title" }, "Keys and door"),
    keyList,
    locks.length ? lockBox(v, locks) : null);
}

function lockBox(v, locks) {
  const may = mayDo(S.me?.role, "open-lock") && isOpen(v);
  const state = S.lock || {};
  const several = locks.length > 1;
  const where = v.site ? displayAddress(v.site) : "the customer's door";
  const body = [];
  if (!may) {
    body.push(h("p", { class: "help" }, isOpen(v)
      ? `Keyless lock ${locks.join(", ")}.`
      : `Keyless lock ${locks.join(", ")}: it can be opened remotely only while the alarm is open.`));
  } else if (state.confirming) {
    body.push(
      h("p", { class: "lock-confirm", id: "lock-confirm-text" },
        `Open the door at ${where} now (lock ${state.confirming})? It unlocks for whoever is at the door. `,
        "The request is recorded on the alarm's trail and in the audit log."),
      h("div", { class: "lock-buttons" },
        h("button", { type: "button", class: "btn btn-danger", disabled: state.busy,
          "aria-describedby": "lock-confirm-text",
          dataset: { action: "confirm-open-lock", cid: state.confirming } }, "Yes, open the door"),
        h("button", { type: "button", class: "btn btn-quiet", disabled: state.busy,
          dataset: { action: "cancel-open-lock" } }, "Cancel")));
  } else {
    body.push(h("p", { class: "help" },
      "Unlocks the door remotely, for a responder at the door without a key. The lock reports when it opens."),
    h("div", { class: "lock-buttons" }, locks.map((cid) =>
      h("button", { type: "button", class: "btn btn-danger", disabled: state.busy,
        dataset: { action: "open-lock", cid } },
        several ? `Open the door lock ${cid}…` : "Open the door lock…"))));
  }
  return h("div", { class: "lock-box", dataset: { role: "lock" } },
    h("h4", {}, several ? "Door locks" : "Door lock"),
    ...body,
    h("p", { id: "lock-sent", class: "form-ok", role: "status", hidden: !state.sent }, state.sent || ""),
    h("p", { id: "lock-error", class: "form-error", role: "alert", hidden: !state.error }, state.error || ""));
}

function showLock(focus) {
  if (S.detailsView) renderDetails(S.detailsView);
  if (focus) $("details-body").querySelector(focus)?.focus();
}

async function openLock(button) {
  const id = S.details;
  const cid = button.dataset.cid;
  if (id == null || !cid) return;
  S.lock = { id, confirming: cid, busy: true, sent: null, error: null };
  showLock();
  const res = await call(`/api/alarms/${id}/open-lock`, { method: "POST", body: { cid } });
  if (!res || S.details !== id) return; // the dialog closed meanwhile
  if (res.ok) {
    const b = res.body;
    S.lock = { id, confirming: null, busy: false, error: null,
      sent: `Unlock sent to lock ${b.lock} at ${clockTime(b.requested_at)}; it expires at ${clockTime(b.expires_at)}.` };
  } else {
    S.lock = { id, confirming: null, busy: false, sent: null,
      error: res.network ? "Could not reach the server. Nothing was sent. Try again."
        : errorText(res.body, `The server refused (${res.status}).`) };
  }
  showLock('[data-action="open-lock"]');
  if (res.status === 409) refreshDetails();
}

function onDetailsBodyClick(event) {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const action = button.dataset.action;
  if (action === "open-lock") {
    S.lock = { id: S.details, confirming: button.dataset.cid, busy: false, sent: null, error: null };
    showLock('[data-action="cancel-open-lock"]');
  } else if (action === "cancel-open-lock") {
    S.lock = null;
    showLock('[data-action="open-lock"]');
  } else if (action === "confirm-open-lock") openLock(button);
  else if (action === "reveal") revealIdentity(button);
  else if (button.dataset.action === "hide-identity") {
    S.reveal = null;
    if (S.detailsView) renderDetails(S.detailsView);
    $("details-body").querySelector('[data-action="reveal"]')?.focus();
  }
}

function fact(label, value) {
  if (value == null || value === "") return null;
  return [h("dt", {}, label), h("dd", {}, value)];
}

function renderDetails(v) {
  S.detailsView = v;
  $("details-title").textContent = v.unknown_device
    ? `Alarm ${v.id}: unknown device ${v.cid}`
    : `Alarm ${v.id}: ${v.customer?.name || `unit ${v.cid}`}`;
  $("details-context").replaceChildren(
    h("span", { class: `badge badge-${v.state}` }, STATE_LABEL[v.state] || v.state),
    v.deadline_at ? ` 30-minute mark at ${clockTime(v.deadline_at)}` : "",
    v.calling ? h("span", { class: "calling", dataset: { role: "calling" } }, ` · ${callingText(v)}`) : "");
  const site = v.site;
  const facts = h("dl", { class: "facts" },
    fact("Unit (CID)", v.cid),
    fact("Customer", v.customer ? `${v.customer.name} (${v.customer.code})` : v.unknown_device ? "Unknown device: not in the register" : null),
    fact("Address", site ? [displayAddress(site), [site.postal_code, site.city].filter(Boolean).join(" ")]
      .filter(Boolean).join(", ") : null),
    fact("Site", site ? (site.kind === "extra" ? "Extra alarm (second address)" : "Main address") : null),
    fact("Door name", site?.door_name),
    fact("Team", v.team ? `${v.team.name}, ${v.team.phone}` : "No responsible team"),
    fact("Provider", v.provider),
    fact("Also told", (v.also_teams || []).join(", ")),
    fact("Route", [SHIFT_LABEL[v.shift], ROUTE_LABEL[v.route_reason] || v.route_reason].filter(Boolean).join(" · ")),
    fact("Received", dateTime(v.received_at)),
    fact("Called out", dateTime(v.called_out_at)),
    fact("Calling now", v.calling ? callingNow(v) : null),
    fact("No answer", v.no_answer_at
      ? `${dateTime(v.no_answer_at)}: nobody of the call order answered` : null),
    fact("Handed over", v.handed_over_at
      ? `${dateTime(v.handed_over_at)}, at the shift change (see the audit trail)` : null),
    fact("Coordinator", v.coordinator_at
      ? `Escalated to the provider's coordinator at ${dateTime(v.coordinator_at)}` : null),
    fact("Red flag", v.red_flag_at ? dateTime(v.red_flag_at) : null),
    fact("Answered by", v.accepted_by ? `${v.accepted_by} at ${clockTime(v.accepted_at)}` : null),
    fact("Answer time", v.answer_seconds != null ? duration(v.answer_seconds) : null),
    fact("On the way", v.on_way_at ? dateTime(v.on_way_at) : null),
    fact("On site", dateTime(v.on_site_at)),
    fact("Arrival time", v.arrival_seconds != null ? duration(v.arrival_seconds) : null),
    fact("Checked out", dateTime(v.completed_at)),
    fact("Kvittering", v.kvittering ? KVITTERING_LABEL[v.kvittering] || v.kvittering : null),
    fact("Visit length", v.visit_seconds != null ? visitLength(v) : null),
    fact("Visit reason", v.visit_reason || (v.needs_visit_reason
      ? h("strong", { class: "reason-missing" }, "⚠ Missing: a visit over 15 minutes needs a reason") : null)),
    fact("Closed", v.closed_at ? `${dateTime(v.closed_at)} by ${v.closed_by || "?"} (${v.closed_via || "?"})` : null),
    fact("Close reason", v.close_reason),
    fact("Reminders", v.reminder_count ? `${v.reminder_count} (last ${clockTime(v.reminded_at)})` : null),
    fact("Repeat presses", v.repeat_count || null),
  );
  const order = v.call_order || [];
  const callingIndex = v.calling && order.length ? (v.calling.step - 1) % order.length : -1;
  const callOrder = order.length
    ? h("section", { class: "details-section" },
        h("h3", {}, "Call order"),
        h("ol", { class: "callorder" }, order.map((m, index) =>
          h("li", { class: index === callingIndex ? "is-calling" : null },
            h("span", {}, m.name), " ", h("a", { href: `tel:${(m.phone || "").replace(/\s+/g, "")}` }, m.phone || ""),
            index === callingIndex && h("span", { class: "tag pick-now" }, "Calling now")))))
    : null;
  const flags = attentionItems(v);
  const attention = flags.length
    ? h("section", { class: "details-section attention-box", dataset: { role: "attention" } },
        flags.map(attentionFlag))
    : null;
  const log = h("section", { class: "details-section" },
    h("h3", {}, "Audit trail"),
    h("table", { class: "log" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "Time"), h("th", { scope: "col" }, "Action"),
        h("th", { scope: "col" }, "State"), h("th", { scope: "col" }, "By"),
        h("th", { scope: "col" }, "Note"))),
      h("tbody", {}, (v.log || []).map((e) => h("tr", {},
        h("td", { class: "nowrap" }, clockTime(e.at)),
        h("td", {}, e.action.replaceAll("_", " ")),
        h("td", { class: "nowrap" }, !e.from_state || e.from_state === e.to_state
          ? STATE_LABEL[e.to_state] || e.to_state
          : `${STATE_LABEL[e.from_state] || e.from_state} → ${STATE_LABEL[e.to_state] || e.to_state}`),
        h("td", {}, e.actor),
        h("td", {}, e.note || ""))))));
  const body = $("details-body");
  // A live update re-renders the details: the button that had focus keeps it.
  const focusedInBody = body.contains(document.activeElement) ? document.activeElement.dataset.action : null;
  body.replaceChildren(attention || "", protectedSection(v) || "", facts, accessSection(v), callOrder || "", log);
  if (focusedInBody) body.querySelector(`[data-action="${focusedInBody}"]`)?.focus();
  const actions = $("details-actions");
  const focusedAction = actions.contains(document.activeElement) ? document.activeElement.dataset.action : null;
  actions.replaceChildren(...actionButtons(v, true));
  if (focusedAction) actions.querySelector(`[data-action="${focusedAction}"]`)?.focus();
}

/** "Calling 2/6: Ahmed Yusuf" with the number to phone. */
function callingNow(v) {
  const phone = v.calling.phone;
  return [callingText(v), phone && " · ", phone && h("a", { href: `tel:${phone.replace(/\s+/g, "")}` }, phone)];
}

function visitLength(v) {
  const over = v.visit_seconds > STANDARD_VISIT_S;
  return `${duration(v.visit_seconds)}${over ? " (over the standard 15 minutes)" : ""}`;
}

function onDetailsAction(event) {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const id = S.details;
  $("details-dialog").close();
  runAction(id, button.dataset.action, button);
}

// -- closed alarms ---------------------------------------------------------------------------

function resetHistory() {
  S.history.seq += 1; // a page still on its way belongs to the old list
  S.history.cursor = null;
  $("history-list").replaceChildren();
  $("history-more").hidden = true;
  $("history-status").textContent = "";
  $("history").open = false;
}

/** The next page of closed alarms (the first when `fresh`), by the server's cursor. */
async function loadHistory(fresh) {
  const list = $("history-list");
  const more = $("history-more");
  if (fresh) {
    S.history.seq += 1;
    S.history.cursor = null;
    list.replaceChildren();
  }
  const seq = S.history.seq;
  const cursor = S.history.cursor ? `&cursor=${encodeURIComponent(S.history.cursor)}` : "";
  more.disabled = true;
  $("history-status").textContent = "Loading…";
  const res = await call(`/api/alarms?scope=closed&limit=${HISTORY_PAGE}${cursor}`);
  if (!res || seq !== S.history.seq) return;
  more.disabled = false;
  if (!res.ok) {
    $("history-status").textContent = failureText(res);
    return;
  }
  list.append(...res.body.alarms.map(historyRow));
  S.history.cursor = res.body.next_cursor;
  more.hidden = !S.history.cursor;
  const n = list.children.length;
  $("history-status").textContent = !n ? "No closed alarms yet."
    : S.history.cursor ? `The ${n} most recent.` : `All ${n} closed alarms.`;
}

function historyRow(v) {
  const how = v.closed_via === "false_alarm" ? "False alarm"
    : v.closed_via === "phone" ? "Phone kvittering" : "Visit, closed";
  return h("li", { class: "history-row", dataset: { id: v.id, cid: v.cid } },
    h("span", { class: "num muted" }, `#${v.id}`),
    h("span", { class: "num" }, dateTime(v.closed_at)),
    h("span", {}, v.unknown_device ? `Unknown device ${v.cid}` : v.customer?.name || `Unit ${v.cid}`),
    h("span", { class: "muted" }, [how, v.closed_by && `by ${v.closed_by}`].filter(Boolean).join(" "),
      v.needs_visit_reason && h("strong", { class: "reason-missing" }, " · ⚠ visit reason missing")),
    h("button", { type: "button", class: "btn btn-quiet btn-small", dataset: { action: "details" } },
      "Details", hidden(` alarm ${v.id}`)));
}

function onHistoryClick(event) {
  const button = event.target.closest("button[data-action]");
  if (button) runAction(Number(button.closest("li").dataset.id), button.dataset.action, button);
}

// -- feedback -------------------------------------------------------------------------------

function toast(text, kind = "info") {
  const el = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : null }, text);
  $("toasts").append(el);
  setTimeout(() => el.remove(), kind === "error" ? 10000 : 5000);
}

function chime() {
  try {
    S.audio = S.audio || new AudioContext();
    const ctx = S.audio;
    [660, 880].forEach((freq, i) => {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      const t = ctx.currentTime + i * 0.22;
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, t);
      gain.gain.exponentialRampToValueAtTime(0.2, t + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.2);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t);
      osc.stop(t + 0.22);
    });
  } catch {
    // no audio device: the visual queue is the alarm
  }
}

function showSound() {
  const b = $("sound-toggle");
  b.setAttribute("aria-pressed", String(S.sound));
  b.textContent = S.sound ? "Sound on" : "Sound off";
}

async function checkReady() {
  const banner = $("banner-ready");
  try {
    const res = await fetch("/readyz", { cache: "no-store" });
    const body = await res.json();
    const down = Object.entries(body.checks || {}).filter(([, ok]) => !ok).map(([name]) => name);
    if (body.ready || !down.length) {
      banner.hidden = true;
      return;
    }
    const text = down.map((name) => ({
      mqtt: "The device link (MQTT) is down: alarms from base units cannot reach Trygg.",
      database: "The database is not answering: actions cannot be saved.",
    })[name] || `${name} is not ready.`).join(" ");
    banner.replaceChildren(h("strong", {}, "Service problem. "), text, " Call technical support.");
    banner.hidden = false;
  } catch {
    // unreachable: the stream's reconnect banner says so already
  }
}

// -- views ----------------------------------------------------------------------------------

const VIEW_TITLE = {
  queue: "Alarm queue", health: "Device health", orders: "Orders", users: "Users", audit: "Audit log",
  reports: "Reports",
};

/** The view in the address's #fragment if the role may use it (a reload keeps it), else its first. */
function currentView() {
  const wanted = location.hash.slice(1);
  return S.views.includes(wanted) ? wanted : S.views[0];
}

function showView(moveFocus) {
  if (!S.me) return;
  const view = currentView();
  for (const name of VIEWS) {
    $(`${name}-view`).hidden = name !== view;
    const tab = $(`view-${name}`);
    if (name === view) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  if (view === "users") users.show();
  if (view === "audit") audit.show();
  if (view === "orders") orders.show();
  if (view === "reports") reports.show();
  if (moveFocus && view) $(`${view}-title`).focus();
  S.lastTitle = "";
  updateTitle();
}

// -- wiring ---------------------------------------------------------------------------------

function wire() {
  health = createHealth({
    call, serverNow, toast,
    announce: (text) => { $("announcer").textContent = text; },
  });
  health.wire();
  const deps = { call, toast, me: () => S.me };
  users = createUsers(deps);
  users.wire();
  audit = createAudit(deps);
  audit.wire();
  orders = createOrders({ ...deps, serverNow });
  orders.wire();
  reports = createReports({ call, serverNow, clockKnown: () => S.clock?.known ?? Promise.resolve() });
  reports.wire();
  window.addEventListener("hashchange", () => showView(true));
  session.wire();
  tabs?.addEventListener("message", recheckSession);
  $("queue").addEventListener("click", onQueueClick);
  $("history").addEventListener("toggle", () => { if ($("history").open) loadHistory(true); });
  $("history-more").addEventListener("click", () => loadHistory(false));
  $("history-list").addEventListener("click", onHistoryClick);
  for (const [name, { field }] of Object.entries(TEXT_DIALOGS)) {
    $(`${name}-form`).addEventListener("submit", (event) => submitTextDialog(name, event));
    $(field).addEventListener("input", () => {
      $(field).removeAttribute("aria-invalid");
      formError(`${name}-error`, "");
    });
  }
  $("details-actions").addEventListener("click", onDetailsAction);
  $("details-body").addEventListener("click", onDetailsBodyClick);
  $("sound-toggle").addEventListener("click", () => {
    S.sound = !S.sound;
    localStorage.setItem(SOUND_KEY, S.sound ? "on" : "off");
    showSound();
    if (S.sound) chime();
  });
  for (const dialog of document.querySelectorAll("dialog")) {
    dialog.addEventListener("click", (event) => {
      if (event.target.closest("[data-close]")) dialog.close();
    });
    dialog.addEventListener("close", () => {
      if (dialog.id === "details-dialog") {
        // A revealed identity does not outlive the dialog, in memory or in the page.
        S.details = null;
        S.detailsView = null;
        S.reveal = null;
        S.lock = null;
        $("details-body").replaceChildren();
      }
      if (dialog.dataset.owner) return; // health.js and users.js put focus back themselves
      if (dialog.id === "clear-dialog") return; // health.js puts focus back itself
      // the next dialog may already be opening (details -> accept); focus goes back later
      if (!document.querySelector("dialog[open]")) restoreFocus();
    });
  }
  // The network went away: the stream's socket can look alive for a long while, so drop
  // it now and say so. Back on the network or woken from sleep: do not wait for the backoff.
  window.addEventListener("offline", () => S.stream?.kick());
  window.addEventListener("online", () => S.stream?.kick());
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && S.conn !== "live") S.stream?.kick();
  });
  showSound();
}

function boot() {
  sessionStorage.removeItem(OLD_TOKEN_KEY);
  wire();
  session.resume();
}

boot();
