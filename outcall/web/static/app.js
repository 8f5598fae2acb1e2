// outcall console: plain ES module, no build step. Talks to /api/v1 with the bearer token kept in
// sessionStorage. Chinese by default, English on the header button.
const $ = (sel, el = document) => el.querySelector(sel);
const root = $("#main");
// each route renders into a fresh view: a page still loading for an earlier route writes into its own,
// detached view and never over the current page
let main = root;

// ---------------------------------------------------------------- i18n
const T = {
  zh: {
    campaigns: "外呼任务", calls: "通话记录", dialplans: "话术", dnc: "免打扰", admin: "管理", agents: "坐席",
    signin: "登录", token: "访问令牌", signout: "退出", badToken: "令牌无效或已撤销", create: "新建任务",
    name: "名称", dialplan: "话术", status: "状态", actions: "操作", start: "开始", pause: "暂停",
    resume: "继续", stop: "停止", open: "查看", trunk: "线路", cps: "每秒呼叫", capacity: "AI 并发",
    budget: "预算", hours: "呼叫时段", from: "从", to: "到", save: "保存", upload: "上传名单",
    preview: "预览（前 5 行）", importReport: "导入结果", imported: "导入", duplicates: "重复", invalid: "无效",
    row: "行", reason: "原因", dialed: "已拨打", connected: "已接通", inProgress: "进行中",
    connectRate: "接通率", dispositions: "呼叫结果", grades: "意向等级", intents: "客户意图",
    talkTime: "通话时长(分)", spent: "已花费", variants: "A/B 分组", callerIds: "主叫号码健康",
    transcript: "对话记录", recording: "录音", noRecording: "没有录音", phone: "号码", grade: "等级",
    disposition: "结果", started: "开始时间", talk: "通话(秒)", filter: "筛选", all: "全部",
    validate: "校验", valid: "校验通过", problems: "问题", graph: "流程图", chat: "模拟对话",
    send: "发送", restart: "重新开始", runTests: "运行测试", testsPassed: "测试通过",
    saved: "已保存为新版本", add: "添加", remove: "删除", tokens: "令牌", audit: "审计日志", role: "角色",
    created: "已创建", report: "日报", export: "导出", screenPops: "弹屏", state: "状态",
    loading: "加载中…", none: "暂无", prev: "上一页", next: "下一页", mapping: "列对应",
    say: "说点什么，或 /silence、/dtmf 1、/interrupt 文本", funnel: "节点漏斗（近 30 天）",
    inbox: "未识别的回答", addExample: "加为示例", pacing: "拨号策略", maxAttempts: "最多呼叫次数",
    maxDays: "重呼天数", record: "录音",
  },
  en: {
    campaigns: "Campaigns", calls: "Calls", dialplans: "Dialplans", dnc: "Do not call", admin: "Admin",
    agents: "Agents", signin: "Sign in", token: "Access token", signout: "Sign out",
    badToken: "Token invalid or revoked", create: "New campaign", name: "Name", dialplan: "Dialplan",
    status: "Status", actions: "Actions", start: "Start", pause: "Pause", resume: "Resume", stop: "Stop",
    open: "Open", trunk: "Trunk", cps: "Calls/s", capacity: "AI capacity", budget: "Budget",
    hours: "Calling hours", from: "From", to: "To", save: "Save", upload: "Upload call list",
    preview: "Preview (first 5 rows)", importReport: "Import report", imported: "Imported",
    duplicates: "Duplicates", invalid: "Invalid", row: "Row", reason: "Reason", dialed: "Dialed",
    connected: "Connected", inProgress: "In progress", connectRate: "Connect rate",
    dispositions: "Dispositions", grades: "Grades", intents: "Intents", talkTime: "Talk time (min)",
    spent: "Spent", variants: "A/B variants", callerIds: "Caller-ID health", transcript: "Transcript",
    recording: "Recording", noRecording: "No recording", phone: "Phone", grade: "Grade",
    disposition: "Disposition", started: "Started", talk: "Talk (s)", filter: "Filter", all: "All",
    validate: "Validate", valid: "Valid", problems: "Problems", graph: "Graph", chat: "Chat simulator",
    send: "Send", restart: "Restart", runTests: "Run tests", testsPassed: "tests passed",
    saved: "Saved as a new version", add: "Add", remove: "Remove", tokens: "Tokens", audit: "Audit log",
    role: "Role", created: "Created", report: "Daily report", export: "Export", screenPops: "Screen-pops",
    state: "State", loading: "Loading…", none: "Nothing yet", prev: "Previous", next: "Next",
    mapping: "Column mapping", say: "Say something, or /silence, /dtmf 1, /interrupt text",
    funnel: "Node funnel (30 days)", inbox: "Unmatched replies", addExample: "Add as example", pacing: "Pacing",
    maxAttempts: "Max attempts", maxDays: "Retry days", record: "Record",
  },
};
let lang = localStorage.getItem("outcall.lang") || "zh";
const t = (k) => (T[lang] && T[lang][k]) || T.en[k] || k;

// ---------------------------------------------------------------- helpers
function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "html") el.innerHTML = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}
function toast(msg) {
  const el = $("#toast");
  el.textContent = msg;
  el.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => el.classList.remove("show"), 4000);
}
const token = () => sessionStorage.getItem("outcall.token");
let me = null;
const ROLE_CAN = {
  campaigns: ["admin", "manager"], dialplans: ["admin", "designer"], admin: ["admin"], dnc: ["admin", "manager"],
};
const can = (what) => me && ROLE_CAN[what].includes(me.role);

async function api(path, opts = {}) {
  const headers = { Authorization: `Bearer ${token()}`, ...(opts.headers || {}) };
  let body = opts.body;
  if (body && !(body instanceof FormData) && typeof body !== "string") {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(body);
  }
  const r = await fetch(path, { ...opts, headers, body });
  if (r.status === 401) { signout(); throw new Error(t("badToken")); }
  if (!r.ok) {
    let detail = `${r.status}`;
    try { const p = await r.json(); detail = p.detail || p.title || detail; r.problem = p; } catch { /* not json */ }
    const err = new Error(detail);
    err.status = r.status;
    err.problem = r.problem;
    throw err;
  }
  const ct = r.headers.get("content-type") || "";
  return ct.includes("json") ? r.json() : r.text();
}
const fmtPct = (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)}%`);
const fmtTime = (s) => (s ? new Date(s).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB") : "–");

function bars(data, { width = 360 } = {}) {
  const entries = Object.entries(data || {});
  if (!entries.length) return h("p", { class: "muted" }, t("none"));
  const max = Math.max(...entries.map(([, v]) => v), 1);
  const rowH = 22;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${entries.length * rowH}`);
  svg.setAttribute("width", "100%");
  svg.setAttribute("role", "img");
  entries.forEach(([k, v], i) => {
    const w = Math.max(2, ((width - 170) * v) / max);
    svg.insertAdjacentHTML("beforeend",
      `<text x="0" y="${i * rowH + 15}">${escapeXml(k)}</text>` +
      `<rect x="120" y="${i * rowH + 4}" width="${w}" height="14" rx="3" fill="#1f6feb"></rect>` +
      `<text x="${126 + w}" y="${i * rowH + 15}">${v}</text>`);
  });
  return svg;
}
const escapeXml = (s) => String(s).replace(/[<>&"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" })[c]);

// ---------------------------------------------------------------- shell
const PAGES = [
  ["campaigns", "#/campaigns"], ["calls", "#/calls"], ["dialplans", "#/dialplans"], ["dnc", "#/dnc"],
  ["agents", "#/agents"], ["admin", "#/admin"],
];
function renderNav() {
  const nav = $("#nav");
  nav.replaceChildren();
  if (!me) return;
  for (const [key, href] of PAGES) {
    if (key === "admin" && !can("admin")) continue;
    const current = location.hash.startsWith(href);
    nav.append(h("a", { href, "aria-current": current ? "page" : null }, t(key)));
  }
  $("#who").textContent = `${me.actor} · ${me.role}`;
  $("#logout").hidden = false;
  $("#logout").textContent = t("signout");
}
function signout() {
  sessionStorage.removeItem("outcall.token");
  me = null;
  stopStreams();
  location.hash = "#/login";
}
let streams = [];
function stopStreams() { streams.forEach((s) => s.close()); streams = []; }

async function route() {
  stopStreams();
  const hash = location.hash || "#/campaigns";
  if (!token()) { if (hash !== "#/login") { location.hash = "#/login"; return; } return pageLogin(); }
  if (!me) {
    try { me = await api("/api/v1/me"); } catch { return; }
  }
  renderNav();
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  const [, page, arg] = hash.split("?")[0].split("/").map(decodeURIComponent);
  main = h("div");
  root.replaceChildren(main);
  main.replaceChildren(h("p", { class: "muted" }, t("loading")));
  try {
    if (page === "campaigns" && arg) await pageCampaign(arg);
    else if (page === "calls" && arg) await pageCall(arg);
    else if (page === "calls") await pageCalls();
    else if (page === "dialplans" && arg) await pageDialplan(arg);
    else if (page === "dialplans") await pageDialplans();
    else if (page === "dnc") await pageDnc();
    else if (page === "agents") await pageAgents();
    else if (page === "admin") await pageAdmin();
    else await pageCampaigns();
  } catch (e) {
    main.replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
  }
  root.focus({ preventScroll: true });
}

// ---------------------------------------------------------------- pages
function pageLogin() {
  renderNav();
  main = h("div");
  root.replaceChildren(main);
  const view = main;
  const input = h("input", { id: "token", type: "password", autocomplete: "off", required: true, size: 40 });
  const err = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "card", onsubmit: async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("outcall.token", input.value.trim());
    try {
      me = await api("/api/v1/me");
      location.hash = "#/campaigns";
    } catch (e) { sessionStorage.removeItem("outcall.token"); err.textContent = e.message; }
  } },
  h("h1", {}, t("signin")), h("label", { for: "token" }, t("token")), input, " ",
  h("button", { class: "primary", type: "submit" }, t("signin")), err);
  view.replaceChildren(form);
  input.focus();
}

async function pageCampaigns() {
  const view = main;
  const [list, plans] = await Promise.all([api("/api/v1/campaigns?limit=200"), api("/api/v1/dialplans?limit=200")]);
  const rows = list.items.map((c) => h("tr", {},
    h("td", {}, h("a", { href: `#/campaigns/${encodeURIComponent(c.name)}` }, c.name)),
    h("td", {}, c.config.dialplan),
    h("td", {}, h("span", { class: `badge ${c.status}` }, c.status)),
    h("td", {}, can("campaigns") ? actionButtons(c, () => route()) : "")));
  const table = h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, h("th", {}, t("name")), h("th", {}, t("dialplan")), h("th", {}, t("status")), h("th", {}, t("actions")))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 4, class: "muted" }, t("none"))))));
  view.replaceChildren(h("h1", {}, t("campaigns")), table, can("campaigns") ? createForm(plans.items) : "");
}

function actionButtons(c, after) {
  const act = (what) => async () => {
    try { await api(`/api/v1/campaigns/${encodeURIComponent(c.name)}/${what}`, { method: "POST" }); after(); }
    catch (e) { toast(e.message); }
  };
  const out = [];
  if (["draft", "stopped", "done"].includes(c.status)) out.push(h("button", { type: "button", onclick: act("start") }, t("start")));
  if (c.status === "running") out.push(h("button", { type: "button", onclick: act("pause") }, t("pause")));
  if (c.status === "paused") out.push(h("button", { type: "button", onclick: act("resume") }, t("resume")));
  if (["running", "paused"].includes(c.status)) out.push(" ", h("button", { type: "button", onclick: act("stop") }, t("stop")));
  return h("span", { class: "row" }, out);
}

function createForm(plans) {
  const f = (id, label, input) => h("div", {}, h("label", { for: id }, label), input);
  const name = h("input", { id: "c-name", required: true, pattern: "[A-Za-z0-9_\\-]+" });
  const plan = h("select", { id: "c-plan" }, plans.map((p) => h("option", { value: p.name }, p.name)));
  const trunk = h("input", { id: "c-trunk", placeholder: "default" });
  const cps = h("input", { id: "c-cps", type: "number", min: "0.1", step: "0.1", value: "2" });
  const cap = h("input", { id: "c-cap", type: "number", min: "1", value: "10" });
  const budget = h("input", { id: "c-budget", type: "number", min: "0", step: "0.01" });
  const pacing = h("select", { id: "c-pacing" }, h("option", { value: "predictive" }, "predictive"), h("option", { value: "strict" }, "strict"));
  const maxAttempts = h("input", { id: "c-attempts", type: "number", min: "1", value: "5" });
  const maxDays = h("input", { id: "c-days", type: "number", min: "0.5", step: "0.5", value: "3" });
  const variants = h("input", { id: "c-variants", placeholder: "b=0.5" });
  const record = h("input", { id: "c-record", type: "checkbox" });
  const from = h("input", { id: "c-from", type: "time", value: "09:00" });
  const to = h("input", { id: "c-to", type: "time", value: "20:00" });
  const form = h("form", { class: "card", onsubmit: async (ev) => {
    ev.preventDefault();
    const window = [[from.value, to.value]];
    const body = {
      name: name.value.trim(), dialplan: plan.value, trunk: trunk.value.trim() || null,
      calls_per_second: Number(cps.value), ai_capacity: Number(cap.value), pacing: pacing.value,
      retry: { max_attempts: Number(maxAttempts.value), max_days: Number(maxDays.value) }, record: record.checked,
      variants: Object.fromEntries(variants.value.split(",").map((v) => v.trim()).filter(Boolean).map((v) => { const [k, r] = v.split("="); return [k.trim(), Number(r || 0.5)]; })),
      hours: { weekdays: Object.fromEntries([0, 1, 2, 3, 4, 5, 6].map((d) => [d, window])) },
    };
    if (budget.value) body.budget = Number(budget.value);
    try {
      await api("/api/v1/campaigns", { method: "POST", body });
      toast(t("created"));
      location.hash = `#/campaigns/${encodeURIComponent(body.name)}`;
    } catch (e) { toast(e.message); }
  } },
  h("h2", {}, t("create")),
  h("div", { class: "row" }, f("c-name", t("name"), name), f("c-plan", t("dialplan"), plan), f("c-trunk", t("trunk"), trunk),
    f("c-cps", t("cps"), cps), f("c-cap", t("capacity"), cap), f("c-pacing", t("pacing"), pacing),
    f("c-attempts", t("maxAttempts"), maxAttempts), f("c-days", t("maxDays"), maxDays),
    f("c-variants", t("variants"), variants), f("c-record", t("record"), record), f("c-budget", t("budget"), budget),
    f("c-from", `${t("hours")} ${t("from")}`, from), f("c-to", t("to"), to),
    h("div", {}, h("button", { class: "primary", type: "submit" }, t("create")))));
  return form;
}

async function pageCampaign(name) {
  const view = main;
  const c = await api(`/api/v1/campaigns/${encodeURIComponent(name)}`);
  const kpis = h("div", { class: "grid", id: "kpis" });
  const charts = h("div", { class: "grid" });
  const header = h("div", { class: "row" }, h("h1", {}, name), h("span", { class: `badge ${c.status}`, id: "status" }, c.status),
    can("campaigns") ? actionButtons(c, () => route()) : "",
    h("a", { class: "btn", href: `/api/v1/campaigns/${encodeURIComponent(name)}/report?format=md`, onclick: (ev) => { ev.preventDefault(); showReport(name); } }, t("report")));
  const health = h("div", { id: "caller-health" });
  view.replaceChildren(header, kpis, charts, card(t("callerIds"), health), can("campaigns") ? uploadCard(name) : "", h("div", { id: "report" }));
  api(`/api/v1/caller-ids${c.config.trunk ? `?trunk=${encodeURIComponent(c.config.trunk)}` : ""}`).then((pools) => {
    const rows = Object.values(pools).flat();
    health.replaceChildren(rows.length ? h("table", {}, h("tbody", {}, rows.map((r) => h("tr", {},
      h("td", {}, r.number), h("td", {}, h("span", { class: `badge ${r.state === "healthy" ? "running" : "paused"}` }, r.state)),
      h("td", {}, `${t("connectRate")} ${fmtPct(r.answer_rate)}`), h("td", { class: "opt" }, `short ${fmtPct(r.short_ratio)} · blocked ${r.blocked}`),
      h("td", { class: "opt" }, r.reason || ""))))) : h("p", { class: "muted" }, t("none")));
  }).catch((e) => health.replaceChildren(h("p", { class: "error" }, e.message)));
  const render = (s) => {
    const calls = s.calls || {};
    const inProgress = (s.contacts && s.contacts.claimed) || 0;
    kpis.replaceChildren(
      kpi(t("dialed"), s.attempts), kpi(t("connected"), calls.answered || 0), kpi(t("inProgress"), inProgress),
      kpi(t("connectRate"), fmtPct(s.connect_rate)),
      kpi(t("talkTime"), ((calls.talk_time_s && calls.talk_time_s.total) || 0) / 60 > 0 ? (calls.talk_time_s.total / 60).toFixed(1) : "0"),
      kpi(t("spent"), (s.spent || 0).toFixed(2) + (c.config.budget ? ` / ${c.config.budget}` : "")));
    charts.replaceChildren(
      card(t("dispositions"), bars(s.dispositions)), card(t("grades"), bars(calls.grades)),
      card(t("intents"), bars(calls.intents)),
      card(t("variants"), bars(Object.fromEntries(Object.entries(calls.per_variant || {}).map(([k, v]) => [`${k} (p=${v.p_value ?? "–"})`, v.answered])))),
      card(t("callerIds"), bars(Object.fromEntries(Object.entries(calls.per_caller_id || {}).map(([k, v]) => [k, v.answered])))));
  };
  render(await api(`/api/v1/campaigns/${encodeURIComponent(name)}/stats`));
  // live: SSE with the token in a header is not possible with EventSource, so read the stream by fetch
  const ctrl = new AbortController();
  streams.push({ close: () => ctrl.abort() });
  (async () => {
    try {
      const r = await fetch(`/api/v1/campaigns/${encodeURIComponent(name)}/events?interval_s=1`, { headers: { Authorization: `Bearer ${token()}` }, signal: ctrl.signal });
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const chunk = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = chunk.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (data) { const s = JSON.parse(data); render(s); $("#status").textContent = s.status; $("#status").className = `badge ${s.status}`; }
        }
      }
    } catch (e) { if (e.name !== "AbortError") console.warn("stream closed", e.message); }
  })();
}
const kpi = (label, value) => h("div", { class: "kpi" }, h("b", {}, value ?? 0), h("span", {}, label));
const card = (title, body) => h("section", { class: "card" }, h("h2", {}, title), body);

async function showReport(name) {
  const md = await api(`/api/v1/campaigns/${encodeURIComponent(name)}/report?format=md`);
  $("#report").replaceChildren(card(t("report"), h("pre", {}, md)));
}

function uploadCard(name) {
  const file = h("input", { id: "u-file", type: "file", accept: ".csv,.txt,.tsv,.xlsx,.xls" });
  const preview = h("div", { class: "table-wrap" });
  const result = h("div", { "aria-live": "polite" });
  file.addEventListener("change", async () => {
    const f = file.files[0];
    preview.replaceChildren();
    if (!f || !/\.(csv|txt|tsv)$/i.test(f.name)) return;
    const text = (await f.text()).replace(/^\ufeff/, "");
    const lines = text.split(/\r?\n/).filter(Boolean).slice(0, 6);
    const sep = lines[0].includes("\t") ? "\t" : ",";
    const cells = lines.map((l) => l.split(sep));
    preview.append(h("p", { class: "muted" }, t("preview")), h("table", {},
      h("thead", {}, h("tr", {}, cells[0].map((c) => h("th", {}, c)))),
      h("tbody", {}, cells.slice(1).map((r) => h("tr", {}, r.map((c) => h("td", {}, c)))))));
  });
  const form = h("form", { class: "card", onsubmit: async (ev) => {
    ev.preventDefault();
    if (!file.files[0]) return;
    const fd = new FormData();
    fd.append("file", file.files[0]);
    try {
      const rep = await api(`/api/v1/campaigns/${encodeURIComponent(name)}/contacts/upload`, { method: "POST", body: fd });
      result.replaceChildren(h("h2", {}, t("importReport")),
        h("p", { id: "import-summary" }, `${t("imported")}: ${rep.imported} · ${t("duplicates")}: ${rep.duplicates} · ${t("invalid")}: ${rep.invalid_count}`),
        rep.invalid.length ? h("table", { id: "import-errors" }, h("thead", {}, h("tr", {}, h("th", {}, t("row")), h("th", {}, t("reason")))),
          h("tbody", {}, rep.invalid.map((r) => h("tr", {}, h("td", {}, r.row), h("td", { class: "error" }, r.reason))))) : "");
    } catch (e) { result.replaceChildren(h("p", { class: "error", role: "alert" }, e.message)); }
  } }, h("h2", {}, t("upload")), h("label", { for: "u-file" }, t("upload")), file, " ",
  h("button", { class: "primary", type: "submit" }, t("upload")), preview, result);
  return form;
}

async function pageCalls() {
  const view = main;
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const camp = h("input", { id: "f-campaign", value: params.get("campaign") || "" });
  const disp = h("select", { id: "f-disp" }, h("option", { value: "" }, t("all")),
    ["answered", "busy", "no_answer", "rejected", "powered_off", "invalid_number", "voicemail", "failed", "transfer_failed"].map((d) => h("option", { value: d, selected: params.get("disposition") === d }, d)));
  const grade = h("select", { id: "f-grade" }, h("option", { value: "" }, t("all")), ["A", "B", "C", "D", "E"].map((g) => h("option", { value: g, selected: params.get("grade") === g }, g)));
  const q = new URLSearchParams({ limit: "50" });
  for (const k of ["campaign", "disposition", "grade"]) if (params.get(k)) q.set(k, params.get(k));
  const data = await api(`/api/v1/calls?${q}`);
  const form = h("form", { class: "row card", onsubmit: (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    if (camp.value) p.set("campaign", camp.value);
    if (disp.value) p.set("disposition", disp.value);
    if (grade.value) p.set("grade", grade.value);
    location.hash = `#/calls?${p}`;
  } }, h("div", {}, h("label", { for: "f-campaign" }, t("campaigns")), camp), h("div", {}, h("label", { for: "f-disp" }, t("disposition")), disp),
  h("div", {}, h("label", { for: "f-grade" }, t("grade")), grade), h("div", {}, h("button", { type: "submit" }, t("filter"))));
  const rows = data.items.map((c) => h("tr", {},
    h("td", {}, h("a", { href: `#/calls/${encodeURIComponent(c.call_id)}` }, c.phone || c.to || c.call_id)),
    h("td", { class: "opt" }, c.campaign || "–"), h("td", {}, c.disposition), h("td", {}, c.grade),
    h("td", { class: "opt" }, fmtTime(c.started_at)), h("td", { class: "opt" }, c.talk_s)));
  view.replaceChildren(h("h1", {}, t("calls")), form, h("div", { class: "table-wrap" }, h("table", { id: "calls" },
    h("thead", {}, h("tr", {}, h("th", {}, t("phone")), h("th", { class: "opt" }, t("campaigns")), h("th", {}, t("disposition")),
      h("th", {}, t("grade")), h("th", { class: "opt" }, t("started")), h("th", { class: "opt" }, t("talk")))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 6, class: "muted" }, t("none")))))));
}

async function pageCall(id) {
  const view = main;
  const o = await api(`/api/v1/calls/${encodeURIComponent(id)}`);
  const audio = h("audio", { controls: true, preload: "metadata", id: "player" });
  const turns = (o.turns || []).map((tu) => h("div", {
    class: `turn ${tu.interrupted ? "interrupted" : ""}`, tabindex: "0", role: "button", "data-start": tu.start_s,
    onclick: () => seek(tu.start_s), onkeydown: (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); seek(tu.start_s); } },
  }, h("b", {}, tu.speaker === "bot" ? "🤖 " : "👤 "), tu.text || "…",
  h("div", { class: "int" }, `${tu.start_s.toFixed(1)} s` + (tu.node ? ` · ${tu.node}` : "") + (tu.intent ? ` · ${tu.intent}` : "") +
    (tu.emotion && tu.emotion !== "neutral" ? ` · ${tu.emotion}` : "") + (tu.interrupted ? " · interrupted" : ""))));
  // recording time 0 is the start of the call; turn times count from the answer
  const offset = o.answered_at ? (new Date(o.answered_at) - new Date(o.started_at)) / 1000 : 0;
  function seek(s) { if (audio.src) { audio.currentTime = s + offset; audio.play().catch(() => {}); } }
  audio.addEventListener("timeupdate", () => {
    const now = audio.currentTime - offset;
    let cur = null;
    for (const el of view.querySelectorAll(".turn")) { if (Number(el.dataset.start) <= now) cur = el; el.classList.remove("current"); }
    if (cur) cur.classList.add("current");
  });
  const recCard = card(t("recording"), o.recording ? audio : h("p", { class: "muted" }, t("noRecording")));
  view.replaceChildren(h("h1", {}, `${o.to} · ${o.disposition} · ${o.grade}`),
    h("p", { class: "muted" }, `${o.campaign || "–"} · ${o.dialplan || ""} · ${fmtTime(o.started_at)} · ${o.grade_rule || ""}`),
    recCard, card(t("transcript"), h("div", { id: "transcript" }, turns.length ? turns : t("none"))));
  if (o.recording) {
    try {
      const r = await fetch(`/api/v1/calls/${encodeURIComponent(id)}/recording`, { headers: { Authorization: `Bearer ${token()}` } });
      if (r.ok) audio.src = URL.createObjectURL(await r.blob());
      else recCard.append(h("p", { class: "muted" }, `${r.status}`));
    } catch (e) { recCard.append(h("p", { class: "error" }, e.message)); }
  }
}

async function pageDialplans() {
  const view = main;
  const data = await api("/api/v1/dialplans?limit=200");
  view.replaceChildren(h("h1", {}, t("dialplans")), h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, h("th", {}, t("name")), h("th", {}, "version"), h("th", {}, "language"))),
    h("tbody", {}, data.items.map((p) => h("tr", {}, h("td", {}, h("a", { href: `#/dialplans/${encodeURIComponent(p.name)}` }, p.name)),
      h("td", {}, p.version || "–"), h("td", {}, p.language || h("span", { class: "error" }, p.error))))))));
}

async function pageDialplan(name) {
  const view = main;
  const plan = await api(`/api/v1/dialplans/${encodeURIComponent(name)}`);
  const ta = h("textarea", { id: "yaml", spellcheck: "false", "aria-label": "YAML", "aria-describedby": "problems" });
  ta.value = plan.yaml;
  const gutter = h("div", { class: "gutter", "aria-hidden": "true" });
  const problems = h("ul", { id: "problems", class: "problems", "aria-live": "polite" });
  const status = h("p", { id: "validity" });
  const graph = h("div", { id: "graph" });
  let bad = new Set();
  const paintGutter = () => {
    const n = ta.value.split("\n").length;
    gutter.replaceChildren(...Array.from({ length: n }, (_, i) => h("div", { class: bad.has(i + 1) ? "bad" : "" }, i + 1)));
    gutter.scrollTop = ta.scrollTop;
  };
  ta.addEventListener("scroll", () => { gutter.scrollTop = ta.scrollTop; });
  let timer = null;
  const validate = async () => {
    const res = await api(`/api/v1/dialplans/${encodeURIComponent(name)}/validate`, { method: "POST", body: { yaml: ta.value } });
    bad = new Set(res.problems.filter((p) => p.severity === "error").map((p) => p.line));
    problems.replaceChildren(...res.problems.map((p) => h("li", { class: p.severity === "error" ? "error" : "muted" },
      h("a", { href: "#", onclick: (ev) => { ev.preventDefault(); gotoLine(p.line); } }, `${t("row")} ${p.line}:${p.col}`), ` ${p.message}`)));
    status.textContent = res.ok ? `✓ ${t("valid")}` : `✗ ${res.problems.filter((p) => p.severity === "error").length} ${t("problems")}`;
    status.className = res.ok ? "ok" : "error";
    saveBtn.disabled = !res.ok || !can("dialplans");
    paintGutter();
    if (res.ok) drawGraph(res.graph, graph);
  };
  const gotoLine = (line) => {
    const lines = ta.value.split("\n");
    const pos = lines.slice(0, line - 1).reduce((a, l) => a + l.length + 1, 0);
    ta.focus();
    ta.setSelectionRange(pos, pos + (lines[line - 1] || "").length);
  };
  ta.addEventListener("input", () => { paintGutter(); clearTimeout(timer); timer = setTimeout(() => validate().catch((e) => toast(e.message)), 300); });
  const saveBtn = h("button", { class: "primary", type: "button", onclick: async () => {
    try { await api(`/api/v1/dialplans/${encodeURIComponent(name)}`, { method: "PUT", body: { yaml: ta.value } }); toast(t("saved")); }
    catch (e) { toast(e.message); }
  } }, t("save"));
  const testOut = h("div", { id: "tests" });
  const testBtn = h("button", { type: "button", onclick: async () => {
    try {
      const r = await api(`/api/v1/dialplans/${encodeURIComponent(name)}/tests`, { method: "POST" });
      testOut.replaceChildren(h("p", { class: r.ok ? "ok" : "error" }, `${r.passed}/${r.total} ${t("testsPassed")} (${r.classifier})`),
        h("ul", {}, r.cases.filter((c) => !c.ok).map((c) => h("li", { class: "error" }, `${c.name}: ${c.failures.join("; ")}`))));
    } catch (e) { testOut.replaceChildren(h("p", { class: "error" }, e.message)); }
  } }, t("runTests"));
  view.replaceChildren(h("div", { class: "row" }, h("h1", {}, `${name} v${plan.version || "?"}`), saveBtn, testBtn),
    h("div", { class: "editor" },
      h("div", {}, h("div", { class: "code" }, gutter, ta), status, problems, testOut),
      h("div", {}, card(t("chat"), chatPanel(name)), card(t("graph"), graph),
        card(t("funnel"), h("div", { id: "funnel" }, t("loading"))), card(t("inbox"), h("div", { id: "inbox" }, t("loading"))))));
  paintGutter();
  await validate();
  const [funnel, inbox] = await Promise.all([
    api(`/api/v1/dialplans/${encodeURIComponent(name)}/funnel`), api(`/api/v1/dialplans/${encodeURIComponent(name)}/inbox`)]);
  $("#funnel", view).replaceChildren(bars(Object.fromEntries(funnel.map((f) => [`${f.node} (-${f.ended_here})`, f.reached]))));
  const addExample = (intent, text) => {
    // append to `examples: [...]` of a declared intent, in the editor; saving makes the new version
    const lines = ta.value.split("\n");
    const start = lines.findIndex((l) => /^intents:\s*$/.test(l));
    const at = start < 0 ? -1 : lines.findIndex((l, i) => i > start && new RegExp(`^  ${intent}:\\s*$`).test(l));
    const ex = at < 0 ? -1 : lines.findIndex((l, i) => i > at && /^    examples:\s*\[.*\]\s*$/.test(l));
    if (ex < 0) { toast(`${intent}: examples: [...] ?`); return; }
    lines[ex] = lines[ex].replace(/\]\s*$/, `, ${text.replace(/[,\[\]]/g, " ")}]`);
    ta.value = lines.join("\n");
    ta.dispatchEvent(new Event("input"));
    toast(`+ ${intent}: ${text}`);
  };
  const declared = [];
  { const lines = ta.value.split("\n"); const st = lines.findIndex((l) => /^intents:\s*$/.test(l));
    for (let i = st + 1; st >= 0 && i < lines.length && !/^\S/.test(lines[i]); i++) { const m = lines[i].match(/^  ([A-Za-z0-9_\-]+):/); if (m) declared.push(m[1]); } }
  $("#inbox", view).replaceChildren(inbox.length ? h("ul", {}, inbox.slice(0, 50).map((r) => {
    const sel = h("select", { "aria-label": "intent" }, declared.map((d) => h("option", { value: d }, d)));
    return h("li", {}, `${r.text} `, h("span", { class: "muted" }, `(${r.node} · ${r.intent})`), " ",
      declared.length ? [sel, " ", h("button", { type: "button", onclick: () => addExample(sel.value, r.text) }, t("addExample"))] : "");
  })) : h("p", { class: "muted" }, t("none")));
}

function drawGraph(g, el) {
  // layered drawing: nodes in columns by their distance from the start node, edges as curves
  if (!g) return;
  const level = { [g.start]: 0 };
  const queue = [g.start];
  while (queue.length) {
    const n = queue.shift();
    for (const e of g.edges) if (e.from === n && !(e.to in level)) { level[e.to] = level[n] + 1; queue.push(e.to); }
  }
  const maxL = Math.max(0, ...Object.values(level));
  for (const n of g.nodes) if (!(n.name in level)) level[n.name] = maxL + 1;
  const cols = {};
  for (const n of g.nodes) (cols[level[n.name]] ||= []).push(n);
  const W = 150, H = 34, GX = 40, GY = 14;
  const pos = {};
  for (const [l, ns] of Object.entries(cols)) ns.forEach((n, i) => { pos[n.name] = { x: 6 + Number(l) * (W + GX), y: 6 + i * (H + GY) }; });
  const width = 12 + (Math.max(...Object.keys(cols).map(Number)) + 1) * (W + GX);
  const height = 12 + Math.max(...Object.values(cols).map((c) => c.length)) * (H + GY);
  const fill = { ask: "#e8f0fe", say: "#f6f8fa", hangup: "#ffebe9", transfer: "#fff8c5" };
  let svg = `<svg viewBox="0 0 ${width} ${height}" width="100%" role="img" aria-label="dialplan graph">`;
  for (const e of g.edges) {
    const a = pos[e.from], b = pos[e.to];
    if (!a || !b) continue;
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
    const back = x2 <= x1;
    const path = back ? `M${a.x + W / 2},${a.y + H} C${a.x + W / 2},${a.y + H + 30} ${b.x + W / 2},${b.y + H + 30} ${b.x + W / 2},${b.y + H}`
      : `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}`;
    svg += `<path d="${path}" fill="none" stroke="#8c959f" stroke-width="1"><title>${escapeXml(e.from)} → ${escapeXml(e.to)}: ${escapeXml(e.label)}</title></path>`;
  }
  for (const n of g.nodes) {
    const p = pos[n.name];
    svg += `<g><rect x="${p.x}" y="${p.y}" width="${W}" height="${H}" rx="6" fill="${fill[n.type] || "#fff"}" stroke="#57606a"></rect>` +
      `<text x="${p.x + 6}" y="${p.y + 21}">${escapeXml(n.label.length > 22 ? n.label.slice(0, 21) + "…" : n.label)}</text><title>${escapeXml(n.label)}</title></g>`;
  }
  el.innerHTML = svg + "</svg>";
}

function chatPanel(name) {
  const turns = [];
  const log = h("div", { class: "chat", id: "chat", "aria-live": "polite" });
  const input = h("input", { id: "chat-input", placeholder: t("say"), "aria-label": t("say"), style: "flex:1" });
  const run = async () => {
    const res = await api(`/api/v1/dialplans/${encodeURIComponent(name)}/simulate`, { method: "POST", body: { turns } });
    log.replaceChildren(...res.lines.map((l) => h("div", { class: `msg ${l.speaker}` }, l.text || (l.kind === "silence" ? "…" : ""),
      l.speaker !== "note" ? h("small", {}, [l.node, l.intent && `${l.intent}${l.confidence ? ` ${l.confidence.toFixed(2)}` : ""}`, l.emotion !== "neutral" && l.emotion].filter(Boolean).join(" · ")) : "")),
    h("div", { class: "msg note" }, `${res.node || ""} · ${res.ended ? res.disposition : "…"} · ${t("grade")} ${res.grade} · ${res.tags.join(",")}`));
    log.scrollTop = log.scrollHeight;
  };
  const form = h("form", { class: "row", onsubmit: async (ev) => {
    ev.preventDefault();
    if (!input.value.trim()) return;
    turns.push(input.value.trim());
    input.value = "";
    try { await run(); } catch (e) { turns.pop(); toast(e.message); }
  } }, input, h("button", { type: "submit" }, t("send")),
  h("button", { type: "button", onclick: async () => { turns.length = 0; await run(); } }, t("restart")));
  run().catch((e) => toast(e.message));
  return h("div", {}, log, form);
}

async function pageDnc() {
  const view = main;
  const data = await api("/api/v1/dnc?limit=200");
  const phone = h("input", { id: "dnc-phone", required: true });
  const form = can("dnc") ? h("form", { class: "row card", onsubmit: async (ev) => {
    ev.preventDefault();
    try { await api("/api/v1/dnc", { method: "POST", body: { phone: phone.value } }); route(); } catch (e) { toast(e.message); }
  } }, h("div", {}, h("label", { for: "dnc-phone" }, t("phone")), phone), h("div", {}, h("button", { class: "primary", type: "submit" }, t("add")))) : "";
  view.replaceChildren(h("h1", {}, t("dnc")), form, h("table", {}, h("tbody", {}, data.items.map((d) => h("tr", {},
    h("td", {}, d.phone), h("td", {}, d.campaign || t("all")), h("td", { class: "opt" }, d.reason || ""),
    h("td", {}, can("dnc") ? h("button", { type: "button", onclick: async () => {
      try { await api(`/api/v1/dnc/${encodeURIComponent(d.phone)}${d.campaign ? `?campaign=${encodeURIComponent(d.campaign)}` : ""}`, { method: "DELETE" }); route(); } catch (e) { toast(e.message); }
    } }, t("remove")) : ""))))));
}

async function pageAgents() {
  const view = main;
  const [agents, pops] = await Promise.all([api("/api/v1/handoff/agents"), api("/api/v1/handoff/screen-pops")]);
  view.replaceChildren(h("h1", {}, t("agents")),
    h("table", {}, h("tbody", {}, agents.map((a) => h("tr", {}, h("td", {}, a.id), h("td", {}, h("span", { class: "badge" }, a.state)), h("td", {}, a.calls))))),
    card(t("screenPops"), pops.length ? pops.map((p) => h("div", { class: "card" }, h("b", {}, `${p.agent} · ${p.summary?.name || ""} ${p.summary?.phone || ""}`),
      h("p", {}, `${p.summary?.intent || ""} · ${p.summary?.grade || ""}`),
      (p.transcript || []).map((x) => h("div", {}, `${x.speaker}: ${x.text}`)))) : h("p", { class: "muted" }, t("none"))));
}

async function pageAdmin() {
  const view = main;
  const [tokens, audit] = await Promise.all([api("/api/v1/tokens?limit=200"), api("/api/v1/audit?limit=50")]);
  const role = h("select", { id: "t-role" }, ["viewer", "designer", "manager", "admin"].map((r) => h("option", { value: r }, r)));
  const tname = h("input", { id: "t-name", required: true });
  const out = h("p", { role: "status" });
  view.replaceChildren(h("h1", {}, t("admin")),
    card(t("tokens"), h("form", { class: "row", onsubmit: async (ev) => {
      ev.preventDefault();
      try { const r = await api("/api/v1/tokens", { method: "POST", body: { role: role.value, name: tname.value } }); out.textContent = r.token; } catch (e) { toast(e.message); }
    } }, h("div", {}, h("label", { for: "t-name" }, t("name")), tname), h("div", {}, h("label", { for: "t-role" }, t("role")), role),
    h("div", {}, h("button", { class: "primary", type: "submit" }, t("add")))), out,
    h("table", {}, h("tbody", {}, tokens.items.map((k) => h("tr", {}, h("td", {}, k.name), h("td", {}, k.role), h("td", { class: "opt" }, k.revoked_at ? "revoked" : "")))))),
    card(t("audit"), h("div", { class: "table-wrap" }, h("table", { id: "audit" }, h("tbody", {}, audit.items.map((a) => h("tr", {},
      h("td", { class: "opt" }, fmtTime(a.at)), h("td", {}, a.actor), h("td", {}, a.action), h("td", {}, a.target || ""))))))));
}

// ---------------------------------------------------------------- boot
$("#lang").addEventListener("click", () => {
  lang = lang === "zh" ? "en" : "zh";
  localStorage.setItem("outcall.lang", lang);
  $("#lang").textContent = lang === "zh" ? "EN" : "中文";
  route();
});
$("#lang").textContent = lang === "zh" ? "EN" : "中文";
$("#logout").addEventListener("click", signout);
window.addEventListener("hashchange", route);
route();
