// The session as both the dashboard (app.js) and the responder's phone page
// (mobile/mobile.js) keep it: the sign-in form, signing out, the API calls made with the
// session cookie, and on load whether the cookie still signs someone in.
//
// The session is an HttpOnly cookie set by POST /api/session: a page never holds its
// secret and keeps nothing about it in the browser's storage. Any 401 while signed in
// means the session ended: back to the sign-in form. Both pages give the form the same
// element ids (signin, signin-form, signin-name, signin-password, signin-error, ...),
// with the page itself in #app and its sign-out button #signout.

import { clockTime, errorText } from "./model.js";

const ENDED = "Your session has ended; sign in again.";
const RESUME_RETRY_MS = 5000;

const $ = (id) => document.getElementById(id);

/** What the server says about the session: {status, me}; status 0 if it did not answer. */
export async function currentSession() {
  try {
    const res = await fetch("/api/session", { credentials: "same-origin", cache: "no-store" });
    return { status: res.status, me: res.ok ? await res.json() : null };
  } catch {
    return { status: 0, me: null };
  }
}

/** "Too many failed sign-ins ...; try again in 15 minutes (at 10:47)." */
function lockedText(res, body) {
  const wait = Number(res.headers.get("Retry-After"));
  const detail = errorText(body, "");
  const text = detail
    ? detail.charAt(0).toUpperCase() + detail.slice(1)
    : `Too many failed sign-ins. Try again in ${Math.max(1, Math.ceil(wait / 60))} minutes`;
  return Number.isFinite(wait) && wait > 0
    ? `${text} (at ${clockTime(new Date(Date.now() + wait * 1000).toISOString()).slice(0, 5)}).`
    : `${text}.`;
}

/**
 * The session of one page: {call, enter, ended, resume, wire}. What the page gives:
 *   title              the document's title while the sign-in form shows
 *   me()               who is signed in, or null
 *   start(me)          show the page for `me`, stopping what ran before
 *   stop()             stop it all: the sign-in form shows next
 *   say(text)          tell of a failed sign-out (the page is still showing)
 *   locked(res, body)  optional: the text for a locked sign-in (429); else with the time to wait
 *   forbidden()        optional: a 403 while signed in (the role may have changed meanwhile)
 *   changed()          optional: this tab signed in or out (other tabs share the cookie)
 * The page starts and stops only through the session (enter, ended), which counts them.
 */
export function createSession(page) {
  const { locked = lockedText, forbidden = () => {}, changed = () => {} } = page;
  let resumeTimer = null;
  // Counts the sign-ins and sign-outs of this page: whatever is still on its way when one
  // happens belongs to a session that has ended, and its answer is dropped.
  let generation = 0;

  /**
   * Call the API with the session cookie: {ok, status, body, network}, or null once the
   * session it was sent in has ended (the sign-in form is showing by then).
   */
  async function call(path, { method = "GET", body } = {}) {
    const sentIn = generation;
    const headers = {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let res;
    try {
      res = await fetch(path, {
        method, headers, credentials: "same-origin", cache: "no-store",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      return { ok: false, status: 0, body: null, network: true };
    }
    const data = await jsonOf(res);
    // An answer to a request of an earlier sign-in (another user, maybe): dropped unseen.
    if (sentIn !== generation) return null;
    if (res.status === 401 && page.me()) {
      ended();
      return null;
    }
    if (res.status === 403 && page.me()) forbidden();
    return { ok: res.ok, status: res.status, body: data };
  }

  /** Show the page for `me`: signed in here, in another tab, or still so on load. */
  function enter(me) {
    clearTimeout(resumeTimer);
    resumeTimer = null;
    generation += 1;
    page.start(me);
  }

  /** Stop the page and show the sign-in form, saying why. */
  function leave(notice) {
    generation += 1;
    page.stop();
    showSignIn(notice);
  }

  function showSignIn(notice) {
    $("app").hidden = true;
    $("signin").hidden = false;
    const n = $("signin-notice");
    n.hidden = !notice;
    n.textContent = notice || "";
    clearSigninError();
    $("signin-name").value = "";
    $("signin-password").value = "";
    document.title = page.title;
    $("signin-name").focus();
  }

  /** The server no longer accepts the session: expired, idle, revoked or the user disabled. */
  function ended() {
    if (page.me()) leave(ENDED);
  }

  async function onSignIn(event) {
    event.preventDefault();
    const nameField = $("signin-name");
    const passwordField = $("signin-password");
    const name = nameField.value.trim();
    const password = passwordField.value;
    clearSigninError();
    if (!name) {
      signinError("Enter your name.", nameField);
      return;
    }
    if (!password) {
      signinError("Enter your password.", passwordField);
      return;
    }
    const button = $("signin-button");
    button.disabled = true;
    button.textContent = "Signing in…";
    try {
      let res;
      try {
        res = await fetch("/api/session", {
          method: "POST", credentials: "same-origin", cache: "no-store",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ name, password }),
        });
      } catch {
        signinError("Cannot reach the Trygg server. Check the network and try again.", passwordField);
        return;
      }
      const body = await jsonOf(res);
      passwordField.value = "";
      if (res.ok && body) {
        // The answer carries the session's secret for scripts; the page has the cookie and
        // keeps only who signed in.
        const { token: _secret, idle_timeout_s: _idle, ...me } = body;
        enter(me);
        changed();
      } else if (res.status === 401) {
        signinError("Wrong name or password. Check both and try again.", passwordField);
      } else if (res.status === 403) {
        signinError("This user is disabled. Ask an administrator to enable it.", nameField);
      } else if (res.status === 429) {
        signinError(locked(res, body), passwordField);
      } else if (res.status === 422) {
        signinError(errorText(body, "Check the name and the password."), nameField);
      } else {
        signinError(`The server could not sign you in (${res.status}). Try again.`, passwordField);
      }
    } finally {
      button.disabled = false;
      button.textContent = "Sign in";
    }
  }

  /** The sign-out button: end the session on the server, then the sign-in form. */
  async function signOut() {
    const button = $("signout");
    button.disabled = true;
    let res;
    try {
      res = await fetch("/api/session", { method: "DELETE", credentials: "same-origin", cache: "no-store" });
    } catch {
      res = null;
    } finally {
      button.disabled = false;
    }
    if (!res || (!res.ok && res.status !== 401)) { // 401: it had ended already
      page.say(res ? `The server could not sign you out (${res.status}). You are still signed in; try again.`
        : "Cannot reach the server: you are still signed in. Try again.");
      return;
    }
    leave("You have signed out.");
    changed();
  }

  /** On load, and while the server cannot be reached: the page if signed in, else sign-in. */
  async function resume() {
    resumeTimer = null;
    const { status, me } = await currentSession();
    if (page.me()) return; // signed in meanwhile
    if (me) {
      enter(me);
    } else if (status === 401) {
      if ($("signin").hidden) showSignIn();
      else $("signin-notice").hidden = true;
    } else {
      // The server is restarting or the network is down: the session may well be alive.
      if ($("signin").hidden) showSignIn();
      const n = $("signin-notice");
      n.textContent = "Cannot reach the Trygg server. Trying again…";
      n.hidden = false;
      resumeTimer = setTimeout(resume, RESUME_RETRY_MS);
    }
  }

  function wire() {
    $("signin-form").addEventListener("submit", onSignIn);
    for (const field of ["signin-name", "signin-password"]) {
      $(field).addEventListener("input", () => $(field).removeAttribute("aria-invalid"));
    }
    $("signout").addEventListener("click", signOut);
  }

  return { call, enter, ended, resume, wire };
}

/** The answer's JSON body, or null if it has none. */
async function jsonOf(res) {
  try {
    return await res.json();
  } catch {
    return null;
  }
}

function clearSigninError() {
  $("signin-error").hidden = true;
  $("signin-error").textContent = "";
  $("signin-name").removeAttribute("aria-invalid");
  $("signin-password").removeAttribute("aria-invalid");
}

function signinError(text, field) {
  const e = $("signin-error");
  e.textContent = text;
  e.hidden = false;
  if (field) {
    field.setAttribute("aria-invalid", "true");
    field.focus();
  }
}
