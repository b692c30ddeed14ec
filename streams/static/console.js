// Warden operator console: plain JS, same-origin only (CSP default-src 'self'), no build step.
// Reads GET /accounts/{id} and GET /restrictions; acts through POST /commands with the
// operator token, then polls the account until the decision the command caused is projected.
"use strict";

(() => {
  const SCOPES = ["add_friend", "create_room", "join_open_chat", "send_open_chat_message", "report"];
  const TOKEN_KEY = "warden.operatorToken";
  const ACTOR_KEY = "warden.actor";
  const POLL_INTERVAL_MS = 500;
  const POLL_DEADLINE_MS = 30000;
  const $ = (id) => document.getElementById(id);

  // ---- Decisions in words: a port of streams/explain.py (keep the two in step). ----

  const pad = (n) => String(n).padStart(2, "0");

  function when(ms) {
    if (ms === null || ms === undefined) return "never (indefinite)";
    const d = new Date(ms);
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
      `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())} UTC`;
  }

  function duration(ms) {
    const minutes = Math.floor(ms / 60000);
    if (minutes % (24 * 60) === 0) return `${minutes / (24 * 60)} d`;
    if (minutes % 60 === 0) return `${minutes / 60} h`;
    return `${minutes} min`;
  }

  // Python's format(x, "g") for the numbers evidence carries (6 significant digits).
  const g = (x) => (Number.isInteger(x) ? String(x) : String(Number(Number(x).toPrecision(6))));

  // How Python's f-string shows a value, for the k=v fallback.
  function py(v) {
    if (v === null || v === undefined) return "None";
    if (v === true) return "True";
    if (v === false) return "False";
    if (Array.isArray(v)) return `[${v.map((x) => (typeof x === "string" ? `'${x}'` : py(x))).join(", ")}]`;
    if (typeof v === "object") return `{${Object.entries(v).map(([k, x]) => `'${k}': ${typeof x === "string" ? `'${x}'` : py(x)}`).join(", ")}}`;
    return String(v);
  }

  function evidenceLine(trigger, ev) {
    switch (trigger) {
      case "friend_add_burst":
        return `${ev.count} distinct friends within ${duration(ev.window_ms)} (threshold ${ev.threshold})`;
      case "room_creation_burst": {
        const kind = ev.room_type === "open" ? "open rooms" : "rooms";
        return `${ev.count} ${kind} within ${duration(ev.window_ms)} (threshold ${ev.threshold})`;
      }
      case "report_flood": {
        const reasons = Object.entries(ev.weighted_reasons || {}).map(([k, v]) => `${k} ${g(v)}`).join(", ");
        return `weighted report score ${g(ev.score)} within ${duration(ev.window_ms)} ` +
          `(threshold ${g(ev.threshold)}) from ${ev.reporter_groups} reporter groups; ${reasons}`;
      }
      case "emulator":
        return `signed in from a PC emulator (device ${py(ev.device_id)})`;
      case "virtual_number":
        if (ev.virtual_number) return "virtual phone number";
        return `phone number from ${py(ev.phone_country)} (home ${py(ev.home_country)}) ` +
          "the carrier could not verify";
      case "tainted_device":
        return `device ${py(ev.device_id)} was used by flooded spammer(s) ${(ev.other_accounts || []).slice(0, 3).join(", ")}`;
      case "ban_evasion":
        if ("evaded_by" in ev) return `${ev.evaded_by} used this account's device ${py(ev.device_id)} (evasion)`;
        return `uses device ${py(ev.device_id)} of restricted account(s) ${(ev.other_accounts || []).slice(0, 3).join(", ")}`;
      case "reporter_penalty":
        return `strike ${py(ev.strike)}: ${py(ev.overturned_in_horizon)} overturned reports in 90 days`;
      case "auto_quiet":
        return `nothing unusual since ${when(ev.last_signal_at)}`;
      default:
        return Object.entries(ev).filter(([k]) => k !== "sample_event_ids")
          .map(([k, v]) => `${k}=${py(v)}`).join(", ");
    }
  }

  // Operator evidence (manual, appeal, false_positive) reads better with times and durations
  // spelled out than as explain.py's k=v fallback; everything else is evidenceLine's words.
  function operatorLine(ev) {
    const parts = [];
    if ("granted" in ev) parts.push(ev.granted ? "appeal granted" : "appeal denied");
    if ("restricted_at" in ev) parts.push(`restriction began ${when(ev.restricted_at)}`);
    if ("duration_ms" in ev) parts.push(ev.duration_ms === null ? "indefinite" : `for ${duration(ev.duration_ms)}`);
    if (ev.note) parts.push(`note: “${ev.note}”`);
    return parts.join("; ");
  }
  const OPERATOR_EVIDENCE = new Set(["manual", "appeal", "false_positive"]);

  function relative(ms) {
    if (ms === null || ms === undefined) return "";
    const delta = ms - Date.now();
    const abs = Math.abs(delta);
    const units = [[86400000, "d"], [3600000, "h"], [60000, "min"]];
    let text = "under a minute";
    for (const [size, unit] of units) {
      if (abs >= size) { text = `${Math.floor(abs / size)} ${unit}`; break; }
    }
    return delta >= 0 ? `in ${text}` : `${text} ago`;
  }

  // ---- DOM helpers: text only, never innerHTML. ----

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function setStatus(text, kind = "") {
    const node = $("status");
    node.className = `status ${kind}`.trim();
    node.textContent = text;
  }

  function setResult(text, kind = "") {
    const node = $("result");
    node.className = `result ${kind}`.trim();
    node.textContent = text;
  }

  // ---- HTTP ----

  class ApiError extends Error {
    constructor(status, code, detail) {
      super(`${detail} (${status} ${code})`);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, options = {}) {
    const headers = { Accept: "application/json", ...(options.headers || {}) };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(path, { ...options, headers, cache: "no-store", credentials: "same-origin" });
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    if (!response.ok) {
      throw new ApiError(response.status, (body && body.error) || `http_${response.status}`,
        (body && body.detail) || response.statusText);
    }
    return body;
  }

  const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

  // ---- Operator token ----

  function showTokenState() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const actor = sessionStorage.getItem(ACTOR_KEY);
    $("token-state").textContent = token
      ? `Token saved for this tab${actor ? `; acting as ${actor}` : "; enter your name to act"}.`
      : "No token saved.";
  }

  function saveToken(event) {
    event.preventDefault();
    const token = $("token").value.trim();
    const actor = $("actor").value.trim();
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    if (actor) sessionStorage.setItem(ACTOR_KEY, actor);
    $("token").value = "";
    showTokenState();
    setStatus(token ? "Operator token saved for this tab." : "Operator name saved.", "ok");
  }

  function forgetToken() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(ACTOR_KEY);
    $("token").value = "";
    $("actor").value = "";
    showTokenState();
    setStatus("Operator token forgotten.");
  }

  // ---- Account ----

  let current = null; // the last GET /accounts/{id} body shown

  function latestSeq(account) {
    return account.decisions && account.decisions.length ? account.decisions[0].seq : (account.seq || 0);
  }

  function chips(items, empty) {
    if (!items || !items.length) return empty;
    const span = el("span");
    for (const item of items) span.append(el("span", { class: "chip mono", text: item }));
    return span;
  }

  function renderSummary(a) {
    const dl = $("summary");
    dl.replaceChildren();
    const row = (term, value) => dl.append(el("dt", { text: term }), el("dd", {}, value));
    const restricted = a.status === "restricted";
    row("Status", el("span", { class: `badge ${restricted ? "restricted" : "clear"}`, id: "account-status",
      text: restricted ? "restricted" : "clear" }));
    row("Limited features", chips(a.scopes, "none"));
    if (restricted) {
      row("Level", a.level === null || a.level === undefined ? "—" : String(a.level));
      row("Lifts", a.lift_at === null || a.lift_at === undefined
        ? "never automatically (indefinite; needs an operator)"
        : `${when(a.lift_at)} (${relative(a.lift_at)})`);
      row("Triggers", chips(a.triggers, "none (manual)"));
      if (a.since) row("Restricted since", `${when(a.since)} (${relative(a.since)})`);
      let appeal = a.appeal_pending ? "pending: decide it below" : "none filed";
      if (a.appeal_allowed_at) appeal += `; an appeal is possible from ${when(a.appeal_allowed_at)}`;
      row("Appeal", appeal);
    }
    if (a.type) {
      row("Last decision", `#${a.seq} ${a.type}${a.reason ? ` (${a.reason})` : ""} at ${when(a.at)}`);
    }
  }

  function evidenceItem(trigger, ev) {
    const words = OPERATOR_EVIDENCE.has(trigger) ? operatorLine(ev) : evidenceLine(trigger, ev);
    const li = el("li", {}, el("strong", { text: trigger }), `: ${words}`);
    if (trigger === "report_flood" && Array.isArray(ev.contributions) && ev.contributions.length) {
      const table = el("table", { class: "contrib" },
        el("caption", { class: "muted", text: "Counted reporters (one per device group; weight = credibility, 0 if penalised)" }),
        el("thead", {}, el("tr", {}, ...["reporter", "weight", "reason", "report event"].map((h) => el("th", { scope: "col", text: h })))));
      const body = el("tbody");
      for (const c of ev.contributions) {
        body.append(el("tr", {}, el("td", { class: "mono", text: c.reporter_id }), el("td", { text: g(c.weight) }),
          el("td", { text: c.reason }), el("td", { class: "mono", text: c.event_id })));
      }
      table.append(body);
      li.append(table);
    }
    if (Array.isArray(ev.sample_event_ids) && ev.sample_event_ids.length) {
      li.append(el("div", { class: "samples" }, "sample events: ",
        el("span", { class: "mono", text: ev.sample_event_ids.join(", ") })));
    }
    return li;
  }

  function decisionItem(d, freshSeq) {
    const li = el("li", { class: `${d.type}${d.seq === freshSeq ? " fresh" : ""}`, "data-seq": String(d.seq),
      "data-type": d.type });
    li.append(el("div", { class: "head" }, `#${d.seq} ${d.type}${d.reason ? ` (${d.reason})` : ""}`,
      el("span", { class: "meta" }, ` — ${when(d.at)}`)));
    const meta = [];
    if (d.type === "restricted" || d.type === "extended") {
      meta.push(`level ${d.level}`, `scopes ${(d.scopes || []).join(", ")}`, `lifts ${when(d.lift_at)}`);
    }
    if (d.actor) meta.push(`by ${d.actor}`);
    if (d.appeal_allowed_at) meta.push(`appeal possible from ${when(d.appeal_allowed_at)}`);
    if (d.policy_version) meta.push(`policy ${d.policy_version}`);
    if (meta.length) li.append(el("div", { class: "meta", text: meta.join(" · ") }));
    const evidence = Object.entries(d.evidence || {}).filter(([, ev]) => ev && typeof ev === "object");
    if (evidence.length) {
      const ul = el("ul");
      for (const [trigger, ev] of evidence) ul.append(evidenceItem(trigger, ev));
      li.append(ul);
    }
    return li;
  }

  function renderActions(a) {
    const restricted = a.status === "restricted";
    const pending = restricted && a.appeal_pending;
    for (const button of document.querySelectorAll("#act button[data-action]")) {
      const action = button.dataset.action;
      button.disabled = (action === "grant" || action === "deny") ? !pending
        : (action === "false_positive" || action === "lift") ? !restricted : false;
    }
    $("appeal-hint").textContent = pending ? "The account has an appeal waiting for a decision."
      : "No appeal is pending.";
    $("lift-hint").textContent = restricted
      ? "A false positive also overturns the restriction: it will not count toward later levels."
      : "The account is not restricted.";
  }

  function renderAccount(a, freshSeq = null) {
    current = a;
    $("account").hidden = false;
    $("account-id").textContent = a.account_id;
    renderSummary(a);
    renderActions(a);
    const list = $("timeline");
    list.replaceChildren();
    if (!a.decisions || !a.decisions.length) {
      list.append(el("li", { class: "muted", text: "No decisions for this account: it has never been restricted." }));
    }
    for (const d of a.decisions || []) list.append(decisionItem(d, freshSeq));
  }

  async function lookup(id, { focus = true } = {}) {
    setStatus(`Looking up ${id}…`);
    try {
      const account = await api(`/accounts/${encodeURIComponent(id)}`);
      if (current === null || current.account_id !== account.account_id) setResult("");
      renderAccount(account);
      setStatus(`Account ${account.account_id}: ${account.status}` +
        (account.status === "restricted" ? ` (${account.scopes.join(", ")})` : "") + ".", "ok");
      if (focus) $("account-heading").focus();
    } catch (error) {
      setStatus(`Could not load ${id}: ${error.message}`, "error");
    }
  }

  function routeFromHash() {
    const match = /^#account=(.+)$/.exec(location.hash);
    if (!match) return;
    const id = decodeURIComponent(match[1]);
    $("lookup-id").value = id;
    lookup(id);
  }

  function submitLookup(event) {
    event.preventDefault();
    const id = $("lookup-id").value.trim();
    if (!id) return;
    const hash = `#account=${encodeURIComponent(id)}`;
    if (location.hash === hash) lookup(id);
    else location.hash = hash; // hashchange looks it up, and Back returns to the previous one
  }

  // ---- Acting ----

  function command(action, a, actor) {
    const body = { account_id: a.account_id, actor };
    const note = $("note").value.trim();
    if (note) body.note = note;
    switch (action) {
      case "grant": return { ...body, action: "appeal_decided", granted: true };
      case "deny": return { ...body, action: "appeal_decided", granted: false };
      case "false_positive": return { ...body, action: "mark_false_positive" };
      case "lift": return { ...body, action: "lift" };
      case "restrict": {
        const scopes = [...document.querySelectorAll("#scopes input:checked")].map((c) => c.value);
        if (!scopes.length) throw new Error("choose at least one feature to restrict");
        const unit = $("duration-unit").value;
        if (unit === "indefinite") return { ...body, action: "restrict", scopes };
        const amount = Number($("duration").value);
        if (!Number.isInteger(amount) || amount < 1) throw new Error("the duration must be a whole number ≥ 1");
        return { ...body, action: "restrict", scopes, duration_ms: amount * Number(unit) };
      }
      default: throw new Error(`unknown action ${action}`);
    }
  }

  function setBusy(busy) {
    $("act").setAttribute("aria-busy", busy ? "true" : "false");
    for (const button of document.querySelectorAll("#act button[data-action]")) button.disabled = busy;
    if (!busy && current) renderActions(current);
  }

  async function act(action) {
    if (!current) return;
    const token = sessionStorage.getItem(TOKEN_KEY);
    const actor = sessionStorage.getItem(ACTOR_KEY);
    if (!token || !actor) {
      setResult("Enter your operator token and your name above, and save them, before acting.", "error");
      (token ? $("actor") : $("token")).focus();
      return;
    }
    const account = current;
    let body;
    try { body = command(action, account, actor); } catch (error) {
      setResult(`Not sent: ${error.message}.`, "error");
      return;
    }
    const before = latestSeq(account);
    setBusy(true);
    try {
      const accepted = await api("/commands", {
        method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" },
      });
      setResult(`Command ${body.action} accepted (${accepted.command_id}); waiting for the decision…`);
      const deadline = Date.now() + POLL_DEADLINE_MS;
      while (Date.now() < deadline) {
        const fresh = await api(`/accounts/${encodeURIComponent(account.account_id)}`);
        const decision = (fresh.decisions || []).find((d) => d.seq > before && d.actor === actor);
        if (decision) {
          renderAccount(fresh, decision.seq);
          setResult(`Decision #${decision.seq}: ${decision.type}` +
            `${decision.reason ? ` (${decision.reason})` : ""} by ${decision.actor}. ` +
            `${fresh.account_id} is now ${fresh.status}` +
            `${fresh.status === "restricted" ? ` (${fresh.scopes.join(", ")})` : ""}.`, "ok");
          loadActive();
          return;
        }
        await sleep(POLL_INTERVAL_MS);
      }
      setResult(`The command was published (${accepted.command_id}) but no decision appeared within ` +
        `${POLL_DEADLINE_MS / 1000} s. It may not apply to this account: rejected commands go to ` +
        "dead-letters. Look the account up again to check.", "error");
    } catch (error) {
      const hint = error.status === 401 || error.code === "invalid_token" ? " Check the operator token." : "";
      setResult(`Failed: ${error.message}.${hint}`, "error");
    } finally {
      setBusy(false);
    }
  }

  // ---- Active restrictions ----

  let activeOffset = 0;

  async function loadActive() {
    const order = $("active-order").value;
    const limit = Number($("active-limit").value);
    try {
      const page = await api(`/restrictions?order=${order}&limit=${limit}&offset=${activeOffset}`);
      const rows = $("active-rows");
      rows.replaceChildren();
      for (const r of page.restrictions) {
        rows.append(el("tr", {},
          el("td", {}, el("a", { href: `#account=${encodeURIComponent(r.account_id)}`, class: "mono",
            text: r.account_id })),
          el("td", { text: r.lift_at_ms === null ? "never (indefinite)" : `${when(r.lift_at_ms)} (${relative(r.lift_at_ms)})` }),
          el("td", { text: `${when(r.since_ms)} (${relative(r.since_ms)})` })));
      }
      const orderWords = order === "newest" ? "newest first" : "soonest lift first";
      $("active-caption").textContent = page.total === 0 ? "No active restrictions."
        : `${page.offset + 1}–${page.offset + page.restrictions.length} of ${page.total} ` +
          `active restriction${page.total === 1 ? "" : "s"}, ${orderWords}.`;
      $("active-prev").disabled = activeOffset === 0;
      $("active-next").disabled = page.offset + page.restrictions.length >= page.total;
    } catch (error) {
      $("active-caption").textContent = `Could not load active restrictions: ${error.message}`;
    }
  }

  function page(delta) {
    const limit = Number($("active-limit").value);
    activeOffset = Math.max(0, activeOffset + delta * limit);
    loadActive();
  }

  async function checkHealth() {
    try {
      const response = await fetch("/health", { cache: "no-store" });
      const body = await response.json();
      $("health").textContent = body.status === "ok"
        ? `Worker healthy · policy ${body.policy_version}`
        : `Worker unavailable: ${body.recovered ? "" : "tables recovering "}${body.redis ? "" : `Redis down (${body.redis_error || "unreachable"})`}`;
    } catch (error) {
      $("health").textContent = `Worker not reachable: ${error.message}`;
    }
  }

  // ---- Wiring ----

  function init() {
    const scopes = $("scopes");
    scopes.setAttribute("role", "group");
    scopes.setAttribute("aria-label", "Features to restrict");
    for (const scope of SCOPES) {
      scopes.append(el("label", {}, el("input", { type: "checkbox", value: scope, name: "scope" }), scope));
    }
    $("actor").value = sessionStorage.getItem(ACTOR_KEY) || "";
    showTokenState();
    $("token-form").addEventListener("submit", saveToken);
    $("token-forget").addEventListener("click", forgetToken);
    $("lookup-form").addEventListener("submit", submitLookup);
    for (const button of document.querySelectorAll("#act button[data-action]")) {
      button.addEventListener("click", () => act(button.dataset.action));
    }
    $("duration-unit").addEventListener("change", () => {
      $("duration").disabled = $("duration-unit").value === "indefinite";
    });
    $("active-form").addEventListener("submit", (event) => { event.preventDefault(); activeOffset = 0; loadActive(); });
    $("active-order").addEventListener("change", () => { activeOffset = 0; loadActive(); });
    $("active-limit").addEventListener("change", () => { activeOffset = 0; loadActive(); });
    $("active-prev").addEventListener("click", () => page(-1));
    $("active-next").addEventListener("click", () => page(1));
    window.addEventListener("hashchange", routeFromHash);
    checkHealth();
    loadActive();
    routeFromHash();
  }

  init();
})();
