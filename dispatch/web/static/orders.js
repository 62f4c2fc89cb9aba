// The order board, for TFH and the alarm centre: install, extra-alarm, removal and
// provider-change orders in columns by whose turn it is, the overdue and the most urgent
// first; an order's steps, timeline, keys and notices in a dialog, where the steps that
// can be done now are recorded; and a form to register an order as it arrived.
// The server keeps the rules (deadlines in working days, steps only forward, see
// dispatch/orders.py) and says why it refuses; the page shows its `detail` as it is.

import { h, hidden } from "./dom.js";
import { errorText } from "./model.js";
import { swedishTimeToIso } from "./audit.js";
import { elapsed } from "./health.js";

const REFRESH_MS = 60000; // no live feed for orders: look again every minute

// -- words and rules (no DOM) -----------------------------------------------------------------

export const KIND_LABEL = {
  install: "Install",
  extra_alarm: "Extra alarm",
  removal: "Removal",
  provider_change: "Provider change",
};

export const OWNER_LABEL = {
  day_provider: "Day provider",
  night_organisation: "Night organisation",
  tfh: "TFH",
  alarm_centre: "Alarm centre",
};

export const ORDER_STATE_LABEL = {
  open: "Open",
  done: "Done",
  will_not_be_delivered: "Will not be delivered",
};

export const STEP_LABEL = {
  provider_confirms: "Provider confirms",
  night_confirms: "Night organisation confirms",
  keys_collected: "Keys collected",
  ready_for_install: "Ready for installation",
  registered_with_centre: "Registered with the alarm centre",
  installed: "Installed",
  delivery_started: "Delivery started",
  contact_agreed: "Removal contact agreed",
  unit_removed: "Unit removed",
  lock_removed: "Lock removed",
  keys_returned: "Keys returned",
  delivery_ended: "Delivery ended",
  new_provider_confirms: "New provider confirms",
  keys_handed_over: "Keys handed over",
  centre_updated: "Alarm centre updated",
};

const HOLDER_LABEL = { ...OWNER_LABEL, customer: "Customer" };

const ACTION_LABEL = {
  created: "Registered",
  step_done: "done",
  not_applicable: "does not apply",
  done: "Order complete",
  will_not_be_delivered: "Will not be delivered",
};

// Each kind's steps as dispatch/orders.py STEPS has them: whose they are, which steps
// they wait for, which details they need. A browser test holds the two together.
const step = (name, owner, after = [], needs = []) => ({ step: name, owner, after, needs });
export const STEPS = {
  install: [
    step("provider_confirms", "day_provider"),
    step("night_confirms", "night_organisation"),
    step("keys_collected", "day_provider", ["provider_confirms"], ["key_numbers"]),
    step("ready_for_install", "day_provider", ["keys_collected"]),
    step("registered_with_centre", "tfh", ["ready_for_install", "night_confirms"], ["cid"]),
    step("installed", "tfh", ["registered_with_centre"]),
    step("delivery_started", "day_provider", ["installed"]),
  ],
  extra_alarm: [
    step("provider_confirms", "day_provider"),
    step("ready_for_install", "day_provider", ["provider_confirms"]),
    step("registered_with_centre", "tfh", ["ready_for_install"], ["cid"]),
    step("installed", "tfh", ["registered_with_centre"]),
    step("delivery_started", "day_provider", ["installed"]),
  ],
  removal: [
    step("contact_agreed", "day_provider", [], ["lock_removed"]),
    step("unit_removed", "tfh", ["contact_agreed"]),
    step("lock_removed", "tfh", ["unit_removed"]),
    step("keys_returned", "day_provider", ["contact_agreed"], ["to", "identity_checked", "receipt"]),
    step("delivery_ended", "day_provider", ["unit_removed", "lock_removed", "keys_returned"]),
  ],
  provider_change: [
    step("new_provider_confirms", "day_provider"),
    step("keys_handed_over", "day_provider", ["new_provider_confirms"], ["key_numbers"]),
    step("centre_updated", "tfh", ["new_provider_confirms"]),
  ],
};

const stepLabel = (name) => STEP_LABEL[name] || name.replaceAll("_", " ");
/** "Keys returned (Day provider)"; "Night organisation confirms" names its owner already. */
function ownedStep(s) {
  const label = stepLabel(s.step);
  const owner = OWNER_LABEL[s.owner] || s.owner;
  return label.startsWith(owner) ? label : `${label} (${owner})`;
}
const isDone = (s) => s.done_at != null;
const dueMs = (s) => (s.due ? Date.parse(s.due) : Infinity);

/** The open steps whose turn it is: every step they wait for is done. */
export function possibleSteps(order) {
  if (order.state !== "open") return [];
  const done = new Set(order.steps.filter(isDone).map((s) => s.step));
  const spec = Object.fromEntries((STEPS[order.kind] || []).map((s) => [s.step, s]));
  return order.steps.filter((s) => !isDone(s) && (spec[s.step]?.after || []).every((a) => done.has(a)));
}

/** The step the order waits for first: of those possible now, the earliest due. */
export function nextStep(order) {
  const possible = possibleSteps(order);
  const pool = possible.length ? possible : order.steps.filter((s) => !isDone(s));
  return [...pool].sort((a, b) => dueMs(a) - dueMs(b))[0] || null; // stable: by position
}

/** The board's column of an order: the owner of its next step, or "closed". */
export function columnOf(order) {
  if (order.state !== "open") return "closed";
  return nextStep(order)?.owner || "closed";
}

// -- time: Stockholm wall time, as "Mon 30 Nov 17:00" ------------------------------------

const ZONE = "Europe/Stockholm";
const whenFmt = new Intl.DateTimeFormat("en-US", {
  timeZone: ZONE, weekday: "short", day: "numeric", month: "short", year: "numeric",
  hour: "2-digit", minute: "2-digit", hourCycle: "h23",
});
const dayFmt = new Intl.DateTimeFormat("en-US", {
  timeZone: "UTC", weekday: "short", day: "numeric", month: "short", year: "numeric",
});
const fieldFmt = new Intl.DateTimeFormat("en-US", {
  timeZone: ZONE, year: "numeric", month: "2-digit", day: "2-digit",
  hour: "2-digit", minute: "2-digit", hourCycle: "h23",
});
const partsOf = (fmt, ms) => Object.fromEntries(fmt.formatToParts(new Date(ms)).map((p) => [p.type, p.value]));

/** "Mon 30 Nov 17:00" in Swedish time; the year too when it is not this year's. */
export function when(iso, nowMs) {
  if (!iso) return "";
  const p = partsOf(whenFmt, Date.parse(iso));
  const thisYear = nowMs == null || partsOf(whenFmt, nowMs).year === p.year;
  return `${p.weekday} ${p.day} ${p.month}${thisYear ? "" : ` ${p.year}`} ${p.hour}:${p.minute}`;
}

/** "Fri 4 Dec" for a date ("2026-12-04"). */
export function dayText(isoDate, nowMs) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(isoDate || "");
  if (!m) return isoDate || "";
  const p = partsOf(dayFmt, Date.UTC(+m[1], +m[2] - 1, +m[3]));
  const thisYear = nowMs == null || partsOf(whenFmt, nowMs).year === p.year;
  return `${p.weekday} ${p.day} ${p.month}${thisYear ? "" : ` ${p.year}`}`;
}

/** "in 2 h 5 min" or "1 d 3 h ago". */
export function relative(iso, nowMs) {
  const secs = (Date.parse(iso) - nowMs) / 1000;
  return secs >= 0 ? `in ${elapsed(secs)}` : `${elapsed(-secs)} ago`;
}

/** The date and time fields' values (Swedish wall time) at the instant `ms`. */
export function localFields(ms) {
  const p = partsOf(fieldFmt, ms);
  return { date: `${p.year}-${p.month}-${p.day}`, time: `${p.hour}:${p.minute}` };
}

// -- what a step asks for, and what it recorded -------------------------------------------

const splitList = (text) => text.split(/[,;\n]+/).map((x) => x.trim()).filter(Boolean);

/** The form fields of a step's details: [name, label, kind, help, required]. */
const STEP_FIELDS = {
  keys_collected: [
    ["key_numbers", "Key numbers", "list", "Separate with commas, e.g. TH-1004, N-1004.", true],
    ["night_key", "The night patrol's key (optional)", "text",
      "With a private day provider, the number of the set that goes to the night patrol."],
  ],
  keys_handed_over: [
    ["key_numbers", "Key numbers handed to the new provider", "list", "Separate with commas.", true],
  ],
  registered_with_centre: [
    ["cid", "Unit number (CID)", "digits", "The base unit's number, digits only.", true],
    ["model", "Model (optional)", "text"],
  ],
  contact_agreed: [
    ["lock_removed", "Is the keyless lock removed?", "yesno", null, true],
    ["contact", "Whom to contact for the removal (optional)", "text"],
  ],
  keys_returned: [
    ["to", "Returned to", "text", "The customer, or a person the customer approved.", true],
    ["receipt", "Receipt number", "text", null, true],
    ["identity_checked", "ID shown; name and personal number noted on the receipt", "check", null, true],
  ],
};

const DETAIL_LABEL = {
  key_numbers: "Keys", night_key: "Night patrol's key", cid: "Unit", model: "Model",
  lock_removed: "Lock removed", contact: "Contact", to: "Returned to", receipt: "Receipt",
  identity_checked: "ID checked",
};

/** "Keys: TH-1004, N-1004 · Night patrol's key: N-1004" */
export function detailsText(details) {
  return Object.entries(details || {})
    .filter(([key]) => key !== "applies")
    .map(([key, value]) => {
      const shown = Array.isArray(value) ? value.join(", ")
        : value === true ? "yes" : value === false ? "no" : String(value);
      return `${DETAIL_LABEL[key] || key.replaceAll("_", " ")}: ${shown}`;
    })
    .join(" · ");
}

/** The body a step's form sends, from its fields. */
function stepBody(form, stepName) {
  const body = {};
  for (const [name, , kind] of STEP_FIELDS[stepName] || []) {
    const field = form.elements.namedItem(name);
    if (kind === "check") {
      body[name] = Boolean(field?.checked);
    } else if (kind === "yesno") {
      const picked = form.querySelector(`input[name="${name}"]:checked`);
      if (picked) body[name] = picked.value === "yes";
    } else {
      const text = (field?.value || "").trim();
      if (kind === "list") body[name] = splitList(text);
      else if (text) body[name] = text;
    }
  }
  return body;
}

// -- the view ---------------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);
const COLUMNS = ["day_provider", "night_organisation", "tfh", "alarm_centre", "closed"];
const ALWAYS = ["day_provider", "night_organisation", "tfh"]; // shown even when empty

/**
 * The orders view, wired to the app's session.
 * deps: call(path, opts) -> {ok, status, body, network}, or null once the session has
 * ended; toast(text, kind); serverNow() -> ms; me() -> the signed-in user.
 */
export function createOrders({ call, toast, serverNow, me }) {
  const O = {
    running: false,
    timer: null,
    seq: 0,
    offsetMs: null, // server time minus client time, from the last list
    orders: [],
    providers: null, // [{code, name}] of the day providers, once per session
    open: null, // the order in the details dialog (its last view)
    openSeq: 0,
    stepForm: null, // the step whose form is open in the dialog
    ending: false, // the "will not be delivered" form is open
    focusAfterLoad: null, // an order id whose card takes focus after the next render
  };

  const now = () => (O.offsetMs == null ? serverNow() : Date.now() + O.offsetMs);
  const refused = (res, fallback) => (res.network
    ? "Could not reach the server. Nothing was saved. Try again."
    : errorText(res.body, `${fallback} (${res.status}).`));

  function formError(el, text) {
    el.textContent = text || "";
    el.hidden = !text;
  }

  // -- the board ----------------------------------------------------------------------------

  function query() {
    const params = new URLSearchParams();
    const state = $("orders-state").value;
    const kind = $("orders-kind").value;
    if (state) params.set("state", state);
    if (kind) params.set("kind", kind);
    if ($("orders-overdue").checked) params.set("overdue", "true");
    return params;
  }

  async function load() {
    const seq = ++O.seq;
    const sent = Date.now();
    const [res, late] = await Promise.all([call(`/api/orders?${query()}`), call("/api/orders?overdue=true")]);
    if (!res || seq !== O.seq || !O.running) return;
    if (late?.ok) showCount(late.body.orders.length);
    if (!res.ok) {
      $("orders-status").textContent = `The orders could not be loaded: ${refused(res, "the server refused")}`;
      return;
    }
    O.offsetMs = Date.parse(res.body.server_time) - (sent + Date.now()) / 2;
    O.orders = res.body.orders;
    render();
  }

  function showCount(n) {
    const badge = $("orders-count");
    badge.replaceChildren(String(n), hidden(" overdue"));
    badge.hidden = n === 0;
    $("view-orders").classList.toggle("has-overdue", n > 0);
  }

  function render() {
    const t = now();
    const board = $("orders-board");
    const focused = document.activeElement;
    const focusId = O.focusAfterLoad ?? (board.contains(focused) ? focused.closest("li.order")?.dataset.id : null);
    O.focusAfterLoad = null;

    const columns = new Map(COLUMNS.map((c) => [c, []]));
    for (const order of O.orders) columns.get(columnOf(order))?.push(order);
    const showOpen = $("orders-state").value !== "done" && $("orders-state").value !== "will_not_be_delivered";
    const sections = [];
    for (const [column, list] of columns) {
      if (!list.length && !(showOpen && ALWAYS.includes(column))) continue;
      // Overdue first, then the next deadline; the server's order (most urgent) after that.
      list.sort((a, b) => Number(b.overdue) - Number(a.overdue) ||
        dueMs(nextStep(a) || {}) - dueMs(nextStep(b) || {}));
      const title = column === "closed" ? "Closed" : OWNER_LABEL[column];
      const late = list.filter((o) => o.overdue).length;
      sections.push(h("section", { class: `order-col col-${column}`, "aria-labelledby": `orders-col-${column}` },
        h("h2", { class: "order-col-title", id: `orders-col-${column}` },
          column === "closed" ? title : `${title}'s turn`,
          h("span", { class: "order-col-count" }, ` ${list.length}`),
          late ? h("span", { class: "order-col-late" }, `${late} overdue`) : null),
        list.length
          ? h("ol", { class: "order-cards", "aria-labelledby": `orders-col-${column}` }, list.map((o) => card(o, t)))
          : h("p", { class: "order-col-empty muted" }, "Nothing waiting.")));
    }
    board.replaceChildren(...sections);
    const open = O.orders.filter((o) => o.state === "open").length;
    const late = O.orders.filter((o) => o.overdue).length;
    const shown = O.orders.length;
    $("orders-status").textContent = !shown ? "No orders match the filters."
      : `${shown} ${shown === 1 ? "order" : "orders"}` +
        (open !== shown ? ` (${open} open)` : "") + (late ? `, ${late} overdue.` : ", none overdue.");
    if (focusId != null) {
      board.querySelector(`li.order[data-id="${focusId}"] .order-open`)?.focus({ preventScroll: false });
    }
  }

  function card(o, t) {
    const next = nextStep(o);
    const late = o.steps.filter((s) => s.overdue);
    const others = possibleSteps(o).filter((s) => s !== next);
    const lines = [];
    if (o.state === "open" && next) {
      lines.push(h("p", { class: "order-next" },
        h("span", { class: "muted" }, "Next: "), h("strong", {}, stepLabel(next.step)),
        columnOf(o) !== next.owner ? h("span", { class: "muted" }, ` · ${OWNER_LABEL[next.owner]}`) : null));
      lines.push(next.due
        ? h("p", { class: next.overdue ? "order-due is-late" : "order-due" },
          next.overdue ? `Was due ${when(next.due, t)}` : `Due ${when(next.due, t)}`,
          h("span", { class: "order-rel" }, ` · ${relative(next.due, t)}`))
        : h("p", { class: "order-due muted" }, "No deadline"));
      const alsoLate = late.filter((s) => s !== next);
      if (alsoLate.length) {
        lines.push(h("p", { class: "order-also-late" }, "Also overdue: ",
          alsoLate.map((s) => `${stepLabel(s.step)}, due ${when(s.due, t)}`).join("; ")));
      }
      if (others.length) {
        lines.push(h("p", { class: "order-also muted small" }, "Also open: ",
          others.map((s) => ownedStep(s)).join(", ")));
      }
    } else {
      const ended = [...(o.timeline || [])].reverse().find((e) => e.action === "done" || e.action === "will_not_be_delivered");
      lines.push(h("p", { class: "order-next" }, h("strong", {}, ORDER_STATE_LABEL[o.state] || o.state),
        ended ? h("span", { class: "muted" }, ` · ${when(ended.at, t)}`) : null));
    }
    const meta = [o.site, providerText(o, t)].filter(Boolean).join(" · ");
    return h("li", {
      class: ["order", `kind-${o.kind}`, `state-${o.state}`, o.overdue && "is-overdue"].filter(Boolean).join(" "),
      dataset: { id: o.id, customer: o.customer, kind: o.kind, state: o.state },
    },
    h("div", { class: "order-head" },
      h("button", { type: "button", class: "order-open", dataset: { action: "open" } },
        h("span", { class: "order-customer" }, o.customer),
        h("span", { class: "tag tag-kind" }, KIND_LABEL[o.kind] || o.kind),
        h("span", { class: "order-num muted" }, `#${o.id}`),
        hidden(", open the order")),
      o.overdue && h("span", { class: "badge badge-overdue" },
        h("span", { class: "overdue-mark", "aria-hidden": "true" }, "!"), " Overdue")),
    lines,
    meta && h("p", { class: "order-meta muted small" }, meta));
  }

  function providerText(o, t) {
    if (o.kind === "provider_change") {
      const from = o.details?.old_provider;
      const date = o.details?.effective_date;
      return `${from ? `${from} → ` : "to "}${o.provider}${date ? ` from ${dayText(date, t)}` : ""}`;
    }
    return o.provider || "";
  }

  function onBoardClick(event) {
    const button = event.target.closest("button[data-action='open']");
    if (!button) return;
    openDetails(Number(button.closest("li.order").dataset.id));
  }

  // -- the details dialog --------------------------------------------------------------------

  async function openDetails(id) {
    O.open = O.orders.find((o) => o.id === id) || null;
    O.stepForm = null;
    O.ending = false;
    $("order-result").textContent = "";
    const dialog = $("order-dialog");
    dialog.dataset.id = id;
    if (O.open) renderDetails(O.open);
    else $("order-body").replaceChildren(h("p", { class: "muted" }, "Loading…"));
    if (!dialog.open) dialog.showModal();
    $("order-title").focus();
    await refreshDetails(id);
  }

  async function refreshDetails(id) {
    const seq = ++O.openSeq;
    const res = await call(`/api/orders/${id}`);
    if (!res || seq !== O.openSeq || Number($("order-dialog").dataset.id) !== id || !$("order-dialog").open) return;
    if (!res.ok) {
      $("order-body").replaceChildren(h("p", { class: "form-error" }, refused(res, "The order could not be loaded")));
      return;
    }
    renderDetails(res.body);
  }

  function renderDetails(o) {
    O.open = o;
    const t = now();
    $("order-title").textContent = `${KIND_LABEL[o.kind] || o.kind} order ${o.id}: ${o.customer}`;
    $("order-context").replaceChildren(...[
      h("span", { class: `badge badge-order-${o.state}` }, ORDER_STATE_LABEL[o.state] || o.state),
      o.overdue && h("span", { class: "badge badge-overdue" },
        h("span", { class: "overdue-mark", "aria-hidden": "true" }, "!"), " Overdue"),
      h("span", {}, `Received ${when(o.received_at, t)}`),
      o.site && h("span", {}, `· Site ${o.site}`),
      providerText(o, t) && h("span", {}, `· Provider ${providerText(o, t)}`),
    ].filter(Boolean));

    const possible = new Set(possibleSteps(o).map((s) => s.step));
    const steps = h("section", { class: "details-section", "aria-labelledby": "order-steps-title" },
      h("h3", { id: "order-steps-title" }, "Steps"),
      h("ol", { class: "order-steps" }, o.steps.map((s) => stepRow(o, s, possible.has(s.step), t))));

    const sections = [steps, keysSection(o, t), noticesSection(o, t), timelineSection(o, t)];
    if (O.ending) sections.unshift(endForm());
    $("order-body").replaceChildren(...sections.filter(Boolean));
    const canEnd = o.state === "open" && !o.steps.some((s) => s.step === "delivery_started" && isDone(s));
    $("order-end").hidden = !canEnd || O.ending;
  }

  function stepRow(o, s, canDo, t) {
    let mark;
    let status;
    let cls = "order-step";
    if (isDone(s) && s.applies === false) {
      mark = "–";
      status = [h("strong", {}, "Does not apply"), ` · ${when(s.done_at, t)} by ${s.done_by || "?"}`];
      cls += " is-skipped";
    } else if (isDone(s)) {
      mark = "✓";
      status = [h("strong", {}, "Done"), ` ${when(s.done_at, t)} by ${s.done_by || "?"}`];
      cls += " is-done";
    } else if (s.overdue) {
      mark = "!";
      status = [h("strong", {}, "Overdue"), ` · was due ${when(s.due, t)} (${relative(s.due, t)})`];
      cls += " is-late";
    } else if (o.state !== "open") {
      mark = "·";
      status = "Not done";
    } else if (canDo) {
      mark = "→";
      status = [h("strong", {}, "Can be done now"), s.due ? ` · due ${when(s.due, t)} (${relative(s.due, t)})` : " · no deadline"];
      cls += " is-now";
    } else {
      const spec = (STEPS[o.kind] || []).find((x) => x.step === s.step);
      const done = new Set(o.steps.filter(isDone).map((x) => x.step));
      const waits = (spec?.after || []).filter((a) => !done.has(a)).map(stepLabel);
      mark = "○";
      status = [`Waits for ${waits.join(" and ") || "an earlier step"}`, s.due ? ` · due ${when(s.due, t)}` : ""];
      cls += " is-waiting";
    }
    const detail = isDone(s) ? detailsText(s.details) : "";
    const open = O.stepForm === s.step;
    return h("li", { class: cls, dataset: { step: s.step } },
      h("span", { class: "step-mark", "aria-hidden": "true" }, mark),
      h("div", { class: "step-main" },
        h("p", { class: "step-name" }, h("strong", {}, stepLabel(s.step)),
          h("span", { class: "muted" }, ` · ${OWNER_LABEL[s.owner] || s.owner}`)),
        h("p", { class: "step-status" }, status),
        detail && h("p", { class: "step-detail muted small" }, detail),
        open && stepForm(s.step)),
      canDo && !open && h("button", {
        type: "button", class: "btn btn-small", dataset: { action: "step", step: s.step },
      }, "Record as done…", hidden(` ${stepLabel(s.step)}`)));
  }

  function field(stepName, [name, label, kind, help, required]) {
    const id = `step-${stepName}-${name}`;
    const described = [help && `${id}-help`, `step-${stepName}-error`].filter(Boolean).join(" ");
    const helpEl = help && h("p", { class: "help", id: `${id}-help` }, help);
    if (kind === "yesno") {
      return h("fieldset", { class: "step-choice", "aria-describedby": described },
        h("legend", {}, label),
        h("label", {}, h("input", { type: "radio", name, value: "yes", id: `${id}-yes` }), " Yes, it is removed"),
        h("label", {}, h("input", { type: "radio", name, value: "no", id: `${id}-no` }), " No, the lock stays"));
    }
    if (kind === "check") {
      return h("label", { class: "step-check" },
        h("input", { type: "checkbox", name, id, "aria-describedby": described }), ` ${label}`);
    }
    return h("div", { class: "field" },
      h("label", { for: id }, label),
      h("input", {
        id, name, type: "text", maxlength: "200", autocomplete: "off", spellcheck: "false",
        required: required || null, inputmode: kind === "digits" ? "numeric" : null,
        "aria-describedby": described,
      }),
      helpEl);
  }

  function stepForm(stepName) {
    const label = stepLabel(stepName);
    const fields = STEP_FIELDS[stepName] || [];
    return h("form", { class: "step-form", novalidate: true, dataset: { step: stepName }, "aria-label": `Record ${label}` },
      fields.length
        ? fields.map((f) => field(stepName, f))
        : h("p", { class: "help" }, `Records that ${label.toLowerCase()} is done now, by ${me()?.name || "you"}. Steps are never undone.`),
      h("p", { class: "form-error", id: `step-${stepName}-error`, role: "alert", hidden: true }),
      h("div", { class: "step-form-actions" },
        h("button", { type: "button", class: "btn btn-quiet", dataset: { action: "cancel-step" } }, "Cancel"),
        h("button", { type: "submit", class: "btn btn-primary" }, "Record as done")));
  }

  function endForm() {
    return h("form", { class: "step-form end-form", novalidate: true, dataset: { end: "1" }, "aria-label": "Will not be delivered" },
      h("div", { class: "field" },
        h("label", { for: "order-end-reason" }, "Why the order will not be delivered"),
        h("textarea", { id: "order-end-reason", name: "reason", rows: "2", maxlength: "2000", required: true,
          "aria-describedby": "order-end-error" })),
      h("p", { class: "form-error", id: "order-end-error", role: "alert", hidden: true }),
      h("div", { class: "step-form-actions" },
        h("button", { type: "button", class: "btn btn-quiet", dataset: { action: "cancel-end" } }, "Cancel"),
        h("button", { type: "submit", class: "btn btn-danger" }, "End: will not be delivered")));
  }

  function keysSection(o, t) {
    if (!Array.isArray(o.keys)) return null;
    const holder = (k) => `${HOLDER_LABEL[k.holder] || k.holder || "?"}${k.holder_code ? ` (${k.holder_code})` : ""}`;
    return h("section", { class: "details-section", "aria-labelledby": "order-keys-title" },
      h("h3", { id: "order-keys-title" }, "Keys"),
      o.keys.length
        ? h("table", { class: "log order-keys" },
          h("thead", {}, h("tr", {},
            h("th", { scope: "col" }, "Key"), h("th", { scope: "col" }, "Held by"),
            h("th", { scope: "col" }, "Hand-overs"))),
          h("tbody", {}, o.keys.map((k) => h("tr", { dataset: { key: k.number } },
            h("th", { scope: "row" }, k.number),
            h("td", {}, holder(k), k.returned_at ? h("span", { class: "muted" }, ` · returned ${when(k.returned_at, t)}`) : null),
            h("td", {}, Array.isArray(k.history) && k.history.length
              ? h("ol", { class: "key-history" }, k.history.map((e) => h("li", {},
                `${when(e.at, t)}: ${holder(e)}`,
                e.received_by ? `, to ${e.received_by}` : "",
                e.receipt ? `, receipt ${e.receipt}` : "",
                e.order_id != null ? h("span", { class: "muted" }, ` (order ${e.order_id})`) : null)))
              : "")))))
        : h("p", { class: "muted small" }, "No key sets registered for this customer."));
  }

  function noticesSection(o, t) {
    if (!Array.isArray(o.notices) || !o.notices.length) return null;
    return h("section", { class: "details-section", "aria-labelledby": "order-notices-title" },
      h("h3", { id: "order-notices-title" }, "Notices sent"),
      h("ul", { class: "order-notices" }, o.notices.map((n) => h("li", {},
        h("p", { class: "muted small" }, `To ${n.recipient}${n.created_at ? `, ${when(n.created_at, t)}` : ""}`),
        h("p", { class: "notice-text" }, n.text)))));
  }

  function timelineSection(o, t) {
    const what = (e) => {
      if (e.action === "step_done" || e.action === "not_applicable") return `${stepLabel(e.step)} ${ACTION_LABEL[e.action]}`;
      return ACTION_LABEL[e.action] || `${e.action.replaceAll("_", " ")}${e.step ? `: ${stepLabel(e.step)}` : ""}`;
    };
    return h("section", { class: "details-section", "aria-labelledby": "order-timeline-title" },
      h("h3", { id: "order-timeline-title" }, "Timeline"),
      h("table", { class: "log order-timeline" },
        h("thead", {}, h("tr", {},
          h("th", { scope: "col" }, "Time"), h("th", { scope: "col" }, "What"),
          h("th", { scope: "col" }, "By"), h("th", { scope: "col" }, "Note"))),
        h("tbody", {}, (o.timeline || []).map((e) => h("tr", { dataset: { action: e.action } },
          h("td", { class: "nowrap" }, when(e.at, t)),
          h("td", {}, what(e)),
          h("td", {}, e.actor || ""),
          h("td", {}, e.note || ""))))));
  }

  function onDetailsClick(event) {
    const button = event.target.closest("button[data-action]");
    if (!button || !O.open) return;
    const action = button.dataset.action;
    if (action === "step") {
      O.stepForm = button.dataset.step;
      renderDetails(O.open);
      const form = $("order-body").querySelector(`form.step-form[data-step="${O.stepForm}"]`);
      (form?.querySelector("input, textarea") || form?.querySelector("button[type=submit]"))?.focus();
    } else if (action === "cancel-step") {
      const back = O.stepForm;
      O.stepForm = null;
      renderDetails(O.open);
      $("order-body").querySelector(`button[data-action="step"][data-step="${back}"]`)?.focus();
    } else if (action === "cancel-end") {
      O.ending = false;
      renderDetails(O.open);
      $("order-end").focus();
    }
  }

  async function onDetailsSubmit(event) {
    const form = event.target.closest("form");
    if (!form || !O.open) return;
    event.preventDefault();
    const id = O.open.id;
    if (form.dataset.end) {
      await endOrder(form, id);
      return;
    }
    const stepName = form.dataset.step;
    const error = $(`step-${stepName}-error`);
    const submit = form.querySelector("button[type=submit]");
    formError(error, "");
    submit.disabled = true;
    let res;
    try {
      res = await call(`/api/orders/${id}/steps/${stepName}`, { method: "POST", body: stepBody(form, stepName) });
    } finally {
      submit.disabled = false;
    }
    if (!res || !O.open || O.open.id !== id) return;
    if (!res.ok) {
      formError(error, refused(res, "The server refused"));
      if (res.status === 409) refreshDetails(id); // the order changed meanwhile
      return;
    }
    O.stepForm = null;
    renderDetails(res.body);
    const text = `${stepLabel(stepName)} recorded for order ${id}.` +
      (res.body.state === "done" ? " Every step is done: the order is complete." : "");
    $("order-result").textContent = text;
    toast(text);
    const nextButton = $("order-body").querySelector('button[data-action="step"]');
    (nextButton || $("order-title")).focus();
    load();
  }

  async function endOrder(form, id) {
    const field = form.querySelector("#order-end-reason");
    const error = $("order-end-error");
    const reason = field.value.trim();
    if (!reason) {
      field.setAttribute("aria-invalid", "true");
      formError(error, "Write why the order will not be delivered.");
      field.focus();
      return;
    }
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    let res;
    try {
      res = await call(`/api/orders/${id}/will-not-be-delivered`, { method: "POST", body: { reason } });
    } finally {
      submit.disabled = false;
    }
    if (!res || !O.open || O.open.id !== id) return;
    if (!res.ok) {
      formError(error, refused(res, "The server refused"));
      return;
    }
    O.ending = false;
    renderDetails(res.body);
    const text = `Order ${id} ended: will not be delivered.`;
    $("order-result").textContent = text;
    toast(text);
    $("order-title").focus();
    load();
  }

  function onDetailsClosed() {
    const id = Number($("order-dialog").dataset.id);
    O.open = null;
    O.stepForm = null;
    O.ending = false;
    O.openSeq += 1;
    $("order-body").replaceChildren();
    $("order-result").textContent = "";
    if (!O.running) return;
    const back = $("orders-board").querySelector(`li.order[data-id="${id}"] .order-open`);
    (back || $("orders-title")).focus();
  }

  // -- registering an order ------------------------------------------------------------------

  async function loadProviders() {
    if (O.providers) return;
    const res = await call("/api/providers");
    if (!res?.ok || !O.running) return;
    O.providers = res.body.filter((p) => p.kind === "day");
    $("order-new-provider").replaceChildren(
      h("option", { value: "" }, "Choose the new day provider"),
      O.providers.map((p) => h("option", { value: p.code }, p.name)));
  }

  function showKindFields() {
    const kind = $("order-new-kind").value;
    $("order-new-change").hidden = kind !== "provider_change";
    $("order-new-site-help").textContent = kind === "extra_alarm"
      ? "The extra site's code (the second address), e.g. K-1002-2."
      : "Leave empty for the customer's main site.";
  }

  function openNew() {
    const form = $("order-new-form");
    form.reset();
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    formError($("order-new-error"), "");
    const { date, time } = localFields(now());
    $("order-new-date").value = date;
    $("order-new-time").value = time;
    showKindFields();
    loadProviders();
    $("order-new-dialog").showModal();
    $("order-new-kind").focus();
  }

  function invalid(field, text) {
    field.setAttribute("aria-invalid", "true");
    formError($("order-new-error"), text);
    field.focus();
  }

  async function onNewSubmit(event) {
    event.preventDefault();
    formError($("order-new-error"), "");
    const kind = $("order-new-kind").value;
    const customer = $("order-new-customer").value.trim();
    const site = $("order-new-site").value.trim();
    const date = $("order-new-date").value;
    const time = $("order-new-time").value;
    if (!customer) {
      invalid($("order-new-customer"), "Enter the customer's code, e.g. K-1008.");
      return;
    }
    if (!date !== !time) {
      invalid(date ? $("order-new-time") : $("order-new-date"), "Give both the date and the time the order arrived, or neither (now).");
      return;
    }
    const body = { kind, customer };
    if (site) body.site = site;
    if (date && time) body.received_at = swedishTimeToIso(`${date}T${time}`);
    const assessor = $("order-new-assessor").value.trim();
    if (assessor) body.assessor = assessor;
    if (kind === "provider_change") {
      if ($("order-new-provider").value) body.provider = $("order-new-provider").value;
      if ($("order-new-effective").value) body.effective_date = $("order-new-effective").value;
    }
    const submit = $("order-new-submit");
    submit.disabled = true;
    let res;
    try {
      res = await call("/api/orders", { method: "POST", body });
    } finally {
      submit.disabled = false;
    }
    if (!res) return;
    if (!res.ok) {
      formError($("order-new-error"), refused(res, "The order was refused"));
      return;
    }
    const o = res.body;
    O.focusAfterLoad = o.id;
    $("order-new-dialog").dataset.created = o.id;
    $("order-new-dialog").close();
    const next = nextStep(o);
    const due = next?.due ? `; ${stepLabel(next.step).toLowerCase()} due ${when(next.due, now())}` : "";
    const text = `Order ${o.id} registered: ${KIND_LABEL[o.kind] || o.kind} for ${o.customer}${due}.`;
    $("orders-result").textContent = text;
    toast(text);
    // Show it: the board's filters might hide a new open order.
    $("orders-state").value = "open";
    $("orders-kind").value = "";
    $("orders-overdue").checked = false;
    load();
  }

  function onNewClosed() {
    const dialog = $("order-new-dialog");
    const created = dialog.dataset.created;
    delete dialog.dataset.created;
    if (!created && O.running) $("orders-new").focus(); // else the new card takes focus
  }

  return {
    /** Once, at boot: the listeners of the view and its dialogs. */
    wire() {
      $("orders-board").addEventListener("click", onBoardClick);
      $("orders-filters").addEventListener("change", () => load());
      $("orders-filters").addEventListener("submit", (event) => {
        event.preventDefault();
        load();
      });
      $("orders-new").addEventListener("click", openNew);
      $("order-new-form").addEventListener("submit", onNewSubmit);
      $("order-new-form").addEventListener("input", (event) => {
        event.target.removeAttribute?.("aria-invalid");
        formError($("order-new-error"), "");
      });
      $("order-new-kind").addEventListener("change", showKindFields);
      $("order-new-dialog").addEventListener("close", onNewClosed);
      $("order-body").addEventListener("click", onDetailsClick);
      $("order-body").addEventListener("submit", onDetailsSubmit);
      $("order-body").addEventListener("input", (event) => {
        event.target.removeAttribute?.("aria-invalid");
        const error = event.target.closest("form")?.querySelector(".form-error");
        if (error) formError(error, "");
      });
      $("order-end").addEventListener("click", () => {
        O.ending = true;
        renderDetails(O.open);
        $("order-end-reason")?.focus();
      });
      $("order-dialog").addEventListener("close", onDetailsClosed);
    },
    /** Signed in with a role that works orders: the board and the tab's overdue count. */
    start() {
      if (O.running) return;
      O.running = true;
      load();
      O.timer = setInterval(load, REFRESH_MS);
    },
    /** The view is shown: look again now. */
    show() {
      if (O.running) load();
    },
    stop() {
      O.running = false;
      clearInterval(O.timer);
      O.timer = null;
      O.seq += 1;
      O.openSeq += 1;
      O.orders = [];
      O.providers = null;
      O.open = null;
      O.offsetMs = null;
      $("orders-board").replaceChildren();
      $("orders-status").textContent = "";
      $("orders-result").textContent = "";
      $("orders-filters").reset();
      showCount(0);
    },
  };
}
