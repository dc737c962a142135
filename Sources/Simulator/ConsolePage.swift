/// The console page: one HTML document with its style and script inline (no build step, no
/// external assets). It talks to the simulator at `/console/api/...` and `/console/events`.
enum ConsolePage {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>8x8 connector — dev console</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  :root { --bg:#f4f5f7; --pane:#fff; --line:#dde1e6; --bot:#e8f0fe; --user:#1a73e8; --agent:#fff4e5; --muted:#5f6368; }
  * { box-sizing: border-box; }
  body { margin:0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background:var(--bg); color:#202124; }
  header { display:flex; align-items:center; gap:12px; padding:10px 16px; background:#202124; color:#fff; }
  header h1 { font-size:16px; margin:0; font-weight:600; }
  header .conv { color:#bdc1c6; font-family: ui-monospace, monospace; font-size:12px; }
  header button { margin-left:auto; }
  main { display:grid; grid-template-columns: minmax(300px, 1fr) minmax(300px, 1fr) minmax(320px, 1.1fr); gap:12px; padding:12px; height: calc(100vh - 48px); }
  section { background:var(--pane); border:1px solid var(--line); border-radius:8px; display:flex; flex-direction:column; min-height:0; }
  section h2 { font-size:13px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); margin:0; padding:10px 12px; border-bottom:1px solid var(--line); }
  .messages { flex:1; overflow:auto; padding:12px; display:flex; flex-direction:column; gap:8px; }
  .msg { max-width:85%; padding:8px 10px; border-radius:10px; white-space:pre-wrap; word-wrap:break-word; }
  .msg.bot { background:var(--bot); align-self:flex-start; }
  .msg.agent { background:var(--agent); align-self:flex-start; border:1px solid #f6c26b; }
  .msg.user { background:var(--user); color:#fff; align-self:flex-end; }
  .msg.system { align-self:center; color:var(--muted); font-size:12px; background:none; }
  .msg .who { display:block; font-size:11px; color:var(--muted); margin-bottom:2px; }
  .msg.user .who { color:#d2e3fc; }
  .choices { display:flex; flex-wrap:wrap; gap:6px; margin-top:6px; }
  .choices button { background:#fff; border:1px solid var(--user); color:var(--user); border-radius:14px; padding:4px 10px; cursor:pointer; }
  .card { border:1px solid var(--line); border-radius:8px; padding:8px; margin-top:6px; background:#fff; }
  .typing { color:var(--muted); font-style:italic; padding:0 12px 6px; min-height:20px; }
  form { display:flex; gap:8px; padding:10px; border-top:1px solid var(--line); }
  input[type=text] { flex:1; padding:8px; border:1px solid var(--line); border-radius:6px; font:inherit; }
  button { font:inherit; padding:6px 12px; border-radius:6px; border:1px solid var(--line); background:#fff; cursor:pointer; }
  button.primary { background:var(--user); color:#fff; border-color:var(--user); }
  button:disabled { opacity:.5; cursor:default; }
  .agent-actions { display:flex; gap:8px; padding:10px; border-bottom:1px solid var(--line); align-items:center; flex-wrap:wrap; }
  #agent-status { color:var(--muted); }
  .agent-body { display:flex; flex-direction:column; flex:1; min-height:0; }
  #agent-pane.idle .agent-body { display:none; }
  #agent-pane.idle #agent-idle { display:block; }
  #agent-idle { display:none; padding:24px 12px; color:var(--muted); text-align:center; }
  .side { display:grid; grid-template-rows: auto 1fr; gap:12px; min-height:0; }
  table { border-collapse:collapse; width:100%; font-size:12px; }
  td, th { text-align:left; padding:4px 8px; border-bottom:1px solid var(--line); }
  .status-OK { color:#188038; font-weight:600; } .status-WARNING, .status-REWIND { color:#b06000; font-weight:600; }
  .status-STALL, .status-STOP { color:#d93025; font-weight:600; }
  #log { flex:1; overflow:auto; margin:0; padding:8px 12px; font: 12px/1.5 ui-monospace, monospace; list-style:none; }
  #log li.webhook::before { content:"⇢ "; color:#1a73e8; } #log li.rest::before { content:"⇠ "; color:#188038; }
  .stats { padding:8px 12px; }
</style>
</head>
<body>
<header>
  <h1>8x8 connector — dev console</h1>
  <span class="conv" id="conversation-id">no conversation</span>
  <button id="new-conversation" class="primary">New conversation</button>
</header>
<main>
  <section id="customer-pane">
    <h2>Customer</h2>
    <div class="messages" id="customer-messages"></div>
    <div class="typing" id="bot-typing"></div>
    <form id="customer-form"><input type="text" id="customer-input" placeholder="Write as the customer…" autocomplete="off"><button class="primary" id="customer-send">Send</button></form>
  </section>
  <section id="agent-pane" class="idle">
    <h2>Agent</h2>
    <div id="agent-idle">The agent's desk appears when the bot hands the conversation over.</div>
    <div class="agent-body">
      <div class="agent-actions">
        <span id="agent-status">waiting</span>
        <button id="agent-join" class="primary">Join</button>
        <button id="agent-transfer" disabled>Transfer</button>
        <button id="agent-leave" disabled>Leave</button>
      </div>
      <div class="messages" id="agent-messages"></div>
      <form id="agent-form"><input type="text" id="agent-input" placeholder="Write as the agent…" autocomplete="off" disabled><button id="agent-send" disabled>Send</button></form>
    </div>
  </section>
  <div class="side">
    <section>
      <h2>Live</h2>
      <div class="stats">
        <table id="lag-table"><thead><tr><th>group</th><th>status</th><th>max lag</th><th>total lag</th></tr></thead><tbody></tbody></table>
        <p id="latency">end to end: –</p>
      </div>
    </section>
    <section style="min-height:0">
      <h2>Event log</h2>
      <ul id="log"></ul>
    </section>
  </div>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let conversation = null;
let agent = "agent-1";
let agentCount = 1;

// One request at a time, in the order of the clicks: 8x8 sends a conversation's events in order.
let chain = Promise.resolve();
function api(path, body) {
  const run = () => fetch("/console/api/" + path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body || {}) })
    .then((r) => { if (!r.ok) throw new Error(path + ": " + r.status); return r.status === 204 ? null : r.json(); });
  const result = chain.then(run, run);
  chain = result.catch(() => {});
  return result;
}
function act(action, body) { return api("conversations/" + encodeURIComponent(conversation) + "/" + action, body); }

function add(list, who, author, text, extra) {
  const div = document.createElement("div");
  div.className = "msg " + author;
  if (who) { const w = document.createElement("span"); w.className = "who"; w.textContent = who; div.appendChild(w); }
  if (text) div.appendChild(document.createTextNode(text));
  if (extra) div.appendChild(extra);
  list.appendChild(div);
  list.scrollTop = list.scrollHeight;
  return div;
}

function choices(options, onChoose) {
  const box = document.createElement("div");
  box.className = "choices";
  for (const option of options) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = option.kind;
    b.textContent = option.title;
    b.addEventListener("click", () => onChoose(option));
    box.appendChild(b);
  }
  return box;
}

/// Adaptive Card 1.3, the parts a bot uses: text blocks, facts, images, submit and link actions.
function adaptiveCard(content) {
  const card = document.createElement("div");
  card.className = "card";
  for (const item of content.body || []) {
    if (item.type === "TextBlock") { const p = document.createElement("div"); p.textContent = item.text || ""; if (item.weight === "Bolder") p.style.fontWeight = "600"; card.appendChild(p); }
    else if (item.type === "FactSet") { for (const f of item.facts || []) { const p = document.createElement("div"); p.textContent = (f.title || "") + ": " + (f.value || ""); card.appendChild(p); } }
    else if (item.type === "Image" && /^https?:/.test(item.url || "")) { const img = document.createElement("img"); img.src = item.url; img.alt = item.altText || ""; img.style.maxWidth = "100%"; card.appendChild(img); }
  }
  const actions = (content.actions || []).map((a) => ({ title: a.title || "", kind: "card-action", action: a }));
  if (actions.length) card.appendChild(choices(actions, (o) => {
    const a = o.action;
    // Only web and phone links: a javascript: address from a flow (user text in a url) must not run here.
    if (a.type === "Action.OpenUrl") { if (/^(https?|tel|mailto):/i.test(a.url || "")) window.open(a.url, "_blank", "noopener"); return; }
    add($("customer-messages"), "", "user", o.title);
    act("card", { data: a.data || {} });
  }));
  return card;
}

function botMessage(event) {
  $("bot-typing").textContent = "";
  const extra = document.createElement("div");
  for (const card of event.cards || []) {
    if (card.contentType === "application/8x8.quick.replies") {
      const options = ((card.content || {}).options || []).map((o) => ({ title: o.title, kind: "quick-reply", payload: (o.data || {}).postback || o.title }));
      extra.appendChild(choices(options, (o) => { add($("customer-messages"), "", "user", o.title); act("postback", { title: o.title, payload: o.payload }); }));
    } else if (card.contentType === "application/vnd.microsoft.card.adaptive") {
      extra.appendChild(adaptiveCard(card.content || {}));
    }
  }
  for (const attachment of event.attachments || []) { const a = document.createElement("div"); a.textContent = "📎 attachment " + attachment.id; extra.appendChild(a); }
  add($("customer-messages"), "bot", "bot", event.text || "", extra.childNodes.length ? extra : null);
  if ($("agent-pane").className !== "idle") add($("agent-messages"), "bot", "bot", event.text || "");
}

function setAgent(state, text) {
  const pane = $("agent-pane");
  pane.className = state === "idle" ? "idle" : "";
  $("agent-status").textContent = text;
  const joined = state === "joined";
  $("agent-join").disabled = state !== "waiting";
  for (const id of ["agent-transfer", "agent-leave", "agent-input", "agent-send"]) $(id).disabled = !joined;
}

function logLine(event) {
  const li = document.createElement("li");
  li.className = event.direction;
  li.textContent = event.line;
  $("log").appendChild(li);
  while ($("log").children.length > 300) $("log").removeChild($("log").firstChild);
  $("log").scrollTop = $("log").scrollHeight;
}

const events = new EventSource("/console/events");
events.onmessage = (m) => {
  const event = JSON.parse(m.data);
  if (event.type === "log") { logLine(event); return; }
  if (event.conversationId !== conversation) return;
  switch (event.type) {
    case "message":
      if (event.author === "bot") botMessage(event);
      else if (event.author === "agent") { add($("customer-messages"), "agent", "agent", event.text); add($("agent-messages"), "you", "agent", event.text); }
      break;
    case "typing": $("bot-typing").textContent = "The bot is typing…"; setTimeout(() => { $("bot-typing").textContent = ""; }, 4000); break;
    case "queued": setAgent("waiting", "waiting in queue " + event.queueId); add($("customer-messages"), "", "system", "Waiting for an agent (queue " + event.queueId + ")"); break;
    case "handback": add($("customer-messages"), "", "system", "Handed back to the bot"); break;
    case "ended": add($("customer-messages"), "", "system", "The conversation has ended"); setAgent("idle", ""); $("customer-input").disabled = true; break;
  }
};

$("new-conversation").addEventListener("click", async () => {
  $("customer-messages").innerHTML = ""; $("agent-messages").innerHTML = ""; $("customer-input").disabled = false;
  setAgent("idle", "");
  const answer = await api("conversations", { name: "Jane" });
  conversation = answer.conversationId;
  $("conversation-id").textContent = conversation;
  $("customer-input").focus();
});

$("customer-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("customer-input").value.trim();
  if (!text || !conversation) return;
  $("customer-input").value = "";
  add($("customer-messages"), "", "user", text);
  if ($("agent-pane").className !== "idle") add($("agent-messages"), "customer", "user", text);
  act("message", { text });
});
let lastTyping = 0;
$("customer-input").addEventListener("input", () => {
  if (!conversation || Date.now() - lastTyping < 3000) return;
  lastTyping = Date.now();
  act("typing");
});

$("agent-join").addEventListener("click", async () => { await act("agent-join", { agent }); setAgent("joined", agent + " has the conversation"); add($("customer-messages"), "", "system", "An agent joined"); });
$("agent-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("agent-input").value.trim();
  if (!text) return;
  $("agent-input").value = "";
  act("agent-message", { agent, text });
});
$("agent-transfer").addEventListener("click", async () => {
  await act("agent-transfer", { agent, queueId: "102" });
  agentCount += 1; agent = "agent-" + agentCount;
});
$("agent-leave").addEventListener("click", async () => {
  await act("agent-leave", { agent });
  setAgent("idle", ""); add($("customer-messages"), "", "system", "The agent left");
  agentCount += 1; agent = "agent-" + agentCount;
});

async function refreshStats() {
  try {
    const stats = await (await fetch("/console/api/stats")).json();
    const body = $("lag-table").querySelector("tbody");
    body.innerHTML = "";
    for (const g of stats.groups || []) {
      const tr = document.createElement("tr");
      for (const [value, cls] of [[g.group, ""], [g.status, "status-" + g.status], [g.maxLag, ""], [g.sumLag, ""]]) {
        const td = document.createElement("td"); td.textContent = value; if (cls) td.className = cls; tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    const l = stats.latency || {};
    $("latency").textContent = l.count ? "end to end (webhook to 8x8's answer): p50 " + l.p50 + " ms, p99 " + l.p99 + " ms over " + l.count : "end to end: –";
  } catch (e) { /* the next refresh tries again */ }
}
setInterval(refreshStats, 2000);
refreshStats();
</script>
</body>
</html>
"""#
}
