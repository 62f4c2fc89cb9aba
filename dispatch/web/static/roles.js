// What each role sees and may do in the dashboard, free of the DOM. The server decides
// (every route declares its roles, see dispatch/api/roles.py); this only hides what a
// role could not use anyway. Keep in step with the routes' allow(...).

export const ROLE_LABEL = {
  operator: "Operator",
  responder: "Responder",
  tfh: "TFH technician",
  alarm_manager: "Alarm manager",
  admin: "Admin",
};

// The views, in the order of the tabs; a role's first view is where it starts.
export const VIEWS = ["queue", "health", "orders", "users", "audit", "reports"];

const VIEW_ROLES = {
  queue: ["operator", "responder", "alarm_manager"], // GET /api/alarms, alarm messages
  health: ["operator", "tfh", "alarm_manager"], // technical alarms, health messages
  orders: ["tfh", "operator", "alarm_manager"], // /api/orders
  users: ["admin"], // /api/users
  audit: ["admin", "alarm_manager"], // /api/audit
  reports: ["alarm_manager", "admin"], // /api/reports
};

const ACTION_ROLES = {
  accept: ["operator", "responder"],
  "call-out": ["operator"], // also "Call the next" while the call chain runs
  decline: ["operator"], // POST /decline for the person named; a responder uses /m/
  "false-alarm": ["operator"],
  "visit-reason": ["operator", "responder"],
  close: ["operator"],
  kvittering: ["operator"],
  reveal: ["operator"],
  "open-lock": ["operator", "responder"], // POST /api/alarms/{id}/open-lock, own team's only
  details: ["operator", "responder", "alarm_manager"],
};

export const mayView = (role, view) => (VIEW_ROLES[view] || []).includes(role);
export const mayDo = (role, action) => (ACTION_ROLES[action] || []).includes(role);
export const viewsOf = (role) => VIEWS.filter((view) => mayView(role, view));

/** "Operator", or "Responder, solrosen-bro" for a responder (who sees one team's alarms). */
export function roleText(me) {
  if (!me) return "";
  const label = ROLE_LABEL[me.role] || me.role;
  return me.team ? `${label}, ${me.team}` : label;
}
