// Server-Sent Events over fetch(), signed in by the session cookie (HttpOnly: the page
// never holds the secret). fetch(), not EventSource, so a refused session (401) is told
// apart from a dropped link. Reconnects with backoff until stopped.

export class Unauthorized extends Error {}

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 10000];
// The server sends a keepalive comment every 15 s; silence for longer means a dead link
// (a half-open TCP connection never errors by itself).
const SILENCE_LIMIT_MS = 40000;

/**
 * Read `url` as an event stream until `stop()` is called.
 * handlers: onOpen(), onEvent(name, data), onDown({attempt, retryInMs, error}), onUnauthorized().
 * Every (re)connection calls onOpen once the server answered 200, before any event.
 */
export function openStream(url, handlers) {
  let stopped = false;
  let controller = null;
  let attempt = 0;
  let retryTimer = null;
  let lastBytes = Date.now();
  const watchdog = setInterval(() => {
    if (!stopped && controller && Date.now() - lastBytes > SILENCE_LIMIT_MS) {
      lastBytes = Date.now();
      controller.abort();
    }
  }, 5000);

  async function connect() {
    retryTimer = null;
    controller = new AbortController();
    lastBytes = Date.now();
    let gotData = false;
    try {
      const res = await fetch(url, {
        headers: { Accept: "text/event-stream" },
        credentials: "same-origin",
        cache: "no-store",
        signal: controller.signal,
      });
      if (res.status === 401) throw new Unauthorized("session refused");
      if (!res.ok || !res.body) throw new Error(`stream answered ${res.status}`);
      handlers.onOpen();
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        lastBytes = Date.now();
        if (!gotData) {
          gotData = true;
          attempt = 0; // the server talks: the next drop starts the backoff afresh
        }
        buffer += value;
        buffer = dispatchFrames(buffer, handlers.onEvent);
      }
      throw new Error("the stream ended");
    } catch (error) {
      if (stopped) return;
      if (error instanceof Unauthorized) {
        stopped = true;
        clearInterval(watchdog);
        handlers.onUnauthorized();
        return;
      }
      const wait = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
      const retryInMs = Math.round(wait * (0.8 + Math.random() * 0.4));
      attempt += 1;
      handlers.onDown({ attempt, retryInMs, error });
      retryTimer = setTimeout(connect, retryInMs);
    }
  }

  connect();
  return {
    stop() {
      stopped = true;
      clearTimeout(retryTimer);
      clearInterval(watchdog);
      if (controller) controller.abort();
    },
    /** Drop the connection now and reconnect at once (e.g. the machine woke from sleep). */
    kick() {
      if (stopped) return;
      attempt = 0;
      if (retryTimer !== null) {
        clearTimeout(retryTimer); // waiting out a backoff: go now
        connect();
      } else if (controller) {
        controller.abort(); // connected or connecting: the catch above reconnects
      }
    },
  };
}

/** Split complete frames off the buffer, hand each to onEvent; returns what is left. */
export function dispatchFrames(buffer, onEvent) {
  const normalised = buffer.replace(/\r\n?/g, "\n");
  const frames = normalised.split("\n\n");
  const rest = frames.pop();
  for (const frame of frames) {
    let name = "message";
    const data = [];
    for (const line of frame.split("\n")) {
      if (!line || line.startsWith(":")) continue; // keepalive comment
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") name = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length) continue;
    let parsed;
    try {
      parsed = JSON.parse(data.join("\n"));
    } catch {
      continue; // not ours; never let one bad frame stop the feed
    }
    onEvent(name, parsed);
  }
  return rest;
}
