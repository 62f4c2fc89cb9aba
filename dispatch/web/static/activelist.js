// The list of active alarms fetched while the live stream keeps bringing changes, as the
// dashboard's queue (app.js) and the responder's phone (mobile/mobile.js) both load it.
//
// The stream is newer than any list still on its way: an alarm it brings meanwhile is
// not dropped for missing from that list (the list's older view of it is refused by the
// page's own `isBehind` check).

/** `call` is the page's session call (session.js); returns {sawLive, fetch}. */
export function createActiveList(call) {
  const fetches = new Set(); // per fetch on its way: the ids the stream brought meanwhile

  return {
    /** The stream brought alarm `id`. */
    sawLive(id) {
      for (const touched of fetches) touched.add(id);
    },

    /**
     * The active alarms the server lists now: {alarms, offsetMs, lacks(id)}, or null if
     * there is no list (signed out, refused, unreachable). offsetMs is the server's
     * clock minus this one's, timed by the round trip; lacks(id) whether an alarm the
     * page holds is gone: not listed, and not brought live while the list was on its way.
     */
    async fetch() {
      const touched = new Set();
      fetches.add(touched);
      const sent = Date.now();
      let res;
      try {
        res = await call("/api/alarms?scope=active");
      } finally {
        fetches.delete(touched);
      }
      if (!res || !res.ok) return null;
      const listed = new Set(res.body.alarms.map((view) => view.id));
      return {
        alarms: res.body.alarms,
        offsetMs: Date.parse(res.body.server_time) - (sent + Date.now()) / 2,
        lacks: (id) => !listed.has(id) && !touched.has(id),
      };
    },
  };
}
