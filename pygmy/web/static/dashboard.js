// The live dashboard: a card per node, the chart of the last minutes, events, and the control buttons.
"use strict";

const TOKEN_KEY = "pygmy.adminToken"; // sessionStorage: gone when the tab closes
const WINDOW_SECONDS = 300;
const TIER_ORDER = ["frontend", "catalog", "order"];
// netns: whether `pygmy up --netns` runs (the partition lab: cut and heal buttons); cut: nodes cut off now.
const dash = { control: false, netns: false, cut: new Set(), points: [], cards: new Map(), tierBoxes: new Map() };
const $ = (id) => document.getElementById(id);

const ROLE_NAMES = { "catching-up": "catching up (non-voter)", "pre-candidate": "pre-candidate" };

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

async function control(method, path, body) {
  if (!token()) {
    say($("control-message"), "error", "Type the admin token first.");
    return null;
  }
  const answer = await callJson(method, `/dashboard/api/control/${path}`, { headers: { Authorization: `Bearer ${token()}` }, body });
  if (!answer.ok) say($("control-message"), "error", `${method} ${path}: ${answer.error.message}`);
  return answer.ok ? answer.body : null;
}

// -- cards ------------------------------------------------------------------------------------------

function tierBox(kind) {
  if (!dash.tierBoxes.has(kind)) {
    const summary = el("p", { class: "muted", "data-group": kind });
    const cards = el("div", { class: "cards" });
    const box = el("section", { class: "tier", "aria-label": `${kind} tier` }, el("h2", { text: kind }), summary, cards);
    const boxes = $("tiers");
    const later = TIER_ORDER.slice(TIER_ORDER.indexOf(kind) + 1).map((k) => dash.tierBoxes.get(k)).find(Boolean);
    boxes.insertBefore(box, later ? later.box : null);
    dash.tierBoxes.set(kind, { box, summary, cards });
  }
  return dash.tierBoxes.get(kind);
}

function makeCard(node) {
  const fields = {};
  const dl = el("dl");
  for (const [key, label] of [["role", "role"], ["term", "term"], ["commit", "commit"], ["applied", "applied"],
    ["contact", "last contact"], ["restarts", "restarts"], ["cache", "cache hits"], ["lease", "lease"]]) {
    fields[key] = el("dd");
    fields[key + "Label"] = el("dt", { text: label });
    dl.append(fields[key + "Label"], fields[key]);
  }
  const badge = el("span", { class: "badge" });
  const actions = el("div", { class: "actions" });
  const card = el("article", { class: "card", "data-node": node.name, "aria-label": node.name },
    el("h3", {}, el("span", { text: node.name }), badge), dl, actions);
  const buttons = {
    crash: el("button", { type: "button", class: "danger", "data-action": "kill", "aria-label": `Crash ${node.name} (kill -9)`, text: "Crash",
      onclick: () => act(node.name, "kill", `${node.name} killed with kill -9`) }),
    restart: el("button", { type: "button", class: "secondary", "data-action": "restart", "aria-label": `Restart ${node.name}`, text: "Restart",
      onclick: () => act(node.name, "restart", `${node.name} restarted`) }),
    transfer: el("button", { type: "button", class: "secondary", "data-action": "transfer", "aria-label": `Transfer leadership away from ${node.name}`,
      text: "Transfer leadership", onclick: () => act(node.name, "transfer", null) }),
    partition: el("button", { type: "button", class: "danger", "data-action": "partition", "aria-label": `Cut ${node.name} off from every other node`,
      text: "Cut off", hidden: true, onclick: () => partition(node.name, true) }),
    heal: el("button", { type: "button", class: "secondary", "data-action": "heal", "aria-label": `Heal the links of ${node.name}`,
      text: "Heal", hidden: true, onclick: () => partition(node.name, false) }),
  };
  actions.append(buttons.crash, buttons.restart, buttons.transfer, buttons.partition, buttons.heal);
  return { card, badge, fields, actions, buttons };
}

async function act(name, verb, done) {
  const answer = await control("POST", `nodes/${name}/${verb}`);
  if (!answer) return;
  const text = verb === "transfer" ? `leadership moved from ${answer.from} to ${answer.to || "a follower"}` : done;
  // The control endpoint answers a kill once the process is gone: show it down now, not at the next
  // sample, which may come after the supervisor has already brought it back.
  if (verb === "kill" && dash.cards.get(name)?.last) renderNode({ ...dash.cards.get(name).last, status: "down", role: null });
  say($("control-message"), "ok", text.charAt(0).toUpperCase() + text.slice(1) + ".");
}

async function partition(name, cut) {
  const answer = cut ? await control("POST", "partitions", { node: name }) : await control("DELETE", `partitions/${name}`);
  if (!answer) return;
  say($("control-message"), "ok", cut ? `${name} cut off from every other node.` : `Healed the links of ${name}.`);
  refreshPartitions();
}

// The cuts now, from the control endpoint (409 when the cluster runs without --netns: no lab buttons).
async function refreshPartitions() {
  if (!dash.control || !token()) return;
  const answer = await callJson("GET", "/dashboard/api/control/partitions", { headers: { Authorization: `Bearer ${token()}` } });
  if (!answer.ok && answer.status !== 409) return;
  dash.netns = answer.ok;
  dash.cut = new Set(answer.ok ? answer.body.partitions.map((p) => p.node) : []);
  for (const { last } of dash.cards.values()) if (last) renderNode(last);
}

function show(field, label, value) {
  field.textContent = value === null || value === undefined ? "–" : value;
  const hidden = value === undefined;
  field.hidden = hidden;
  label.hidden = hidden;
}

function renderNode(node) {
  if (!dash.cards.has(node.name)) {
    const made = makeCard(node);
    dash.cards.set(node.name, made);
    tierBox(node.kind).cards.append(made.card);
  }
  const entry = dash.cards.get(node.name);
  entry.last = node;
  const { card, badge, fields, actions, buttons } = entry;
  const up = node.status === "up";
  const leader = node.role === "leader";
  card.classList.toggle("leader", leader && up);
  card.classList.toggle("down", !up);
  card.dataset.status = node.status;
  card.dataset.role = node.role || "";
  badge.className = "badge " + node.status;
  badge.textContent = node.status;
  const backend = node.kind !== "frontend";
  fields.role.className = "role " + (node.role || "");
  show(fields.role, fields.roleLabel, up ? ROLE_NAMES[node.role] || node.role : null);
  show(fields.term, fields.termLabel, backend ? node.term : undefined);
  show(fields.commit, fields.commitLabel, backend ? node.commit : undefined);
  show(fields.applied, fields.appliedLabel, backend ? node.applied : undefined);
  show(fields.contact, fields.contactLabel, backend ? (leader ? "is the leader" : contact(node.last_contact)) : undefined);
  show(fields.restarts, fields.restartsLabel, backend ? node.restarts : undefined);
  const cache = node.cache;
  show(fields.cache, fields.cacheLabel, cache ? percent(cache.hit_rate) : undefined);
  show(fields.lease, fields.leaseLabel, cache ? cache.lease + (cache.lease === "valid" && cache.lease_expires_in_ms != null ? ` (${cache.lease_expires_in_ms} ms left)` : "") : undefined);
  actions.hidden = !dash.control;
  buttons.transfer.hidden = !(backend && leader && up);
  const cut = dash.cut.has(node.name);
  card.classList.toggle("cut", cut);
  card.dataset.cut = String(cut);
  if (cut) badge.textContent = `${node.status}, cut off`;
  buttons.partition.hidden = !dash.netns || cut;
  buttons.heal.hidden = !dash.netns || !cut;
}

const contact = (s) => (s === null || s === undefined ? "never" : s < 1 ? `${Math.round(s * 1000)} ms ago` : `${s.toFixed(1)} s ago`);
const percent = (r) => (r === null || r === undefined ? "–" : `${Math.round(r * 100)}%`);

function renderStatus(status) {
  if (!status) {
    $("overall").textContent = "status unknown";
    return;
  }
  $("overall").textContent = `cluster ${status.status}`;
  $("overall").className = "badge " + (status.status === "ok" ? "up" : "down");
  for (const kind of TIER_ORDER) {
    const nodes = status.nodes.filter((n) => n.kind === kind);
    if (!nodes.length) continue;
    const box = tierBox(kind);
    const group = status.groups[kind];
    box.summary.textContent = group
      ? `leader ${group.leader || "none (election under way)"}, term ${group.term}, ${group.up}/${group.replicas} up${group.quorum ? "" : ", no quorum"}`
      : `${nodes.length} node${nodes.length > 1 ? "s" : ""}`;
    box.summary.dataset.leader = group ? group.leader || "" : "";
    nodes.forEach(renderNode);
  }
}

// -- chart and events -------------------------------------------------------------------------------

function renderCharts() {
  const cutoff = Date.now() / 1000 - WINDOW_SECONDS;
  dash.points = dash.points.filter((p) => p.time >= cutoff);
  for (const field of ["rps", "eps", "p99_ms"]) {
    const id = field === "p99_ms" ? "p99" : field;
    drawChart($("chart-" + id), dash.points, field, WINDOW_SECONDS);
    const last = dash.points[dash.points.length - 1];
    $("now-" + id).textContent = last && Object.keys(last.rates).length
      ? "now: " + TIER_ORDER.map((t) => `${t} ${last.rates[t] && last.rates[t][field] != null ? formatNumber(last.rates[t][field]) : "–"}`).join(", ")
      : "";
  }
}

function addEvents(events) {
  const list = $("events");
  for (const e of events) {
    const when = new Date(e.time * 1000);
    list.prepend(el("li", {}, el("time", { datetime: when.toISOString(), text: when.toLocaleTimeString() }), e.text));
  }
  while (list.children.length > 50) list.lastChild.remove();
}

// -- live stream ------------------------------------------------------------------------------------

function connect() {
  const source = new EventSource("/dashboard/api/stream");
  source.addEventListener("open", () => { $("live").className = "live on"; $("live").textContent = "live"; });
  source.addEventListener("error", () => { $("live").className = "live off"; $("live").textContent = "reconnecting…"; });
  source.addEventListener("hello", (msg) => {
    const hello = JSON.parse(msg.data);
    dash.points = hello.history.filter((p) => Object.keys(p.rates).length);
    $("events").replaceChildren();
    addEvents(hello.events);
    renderStatus(hello.latest);
    renderCharts();
  });
  source.addEventListener("frame", (msg) => {
    const frame = JSON.parse(msg.data);
    if (Object.keys(frame.rates).length) dash.points.push({ time: frame.time, rates: frame.rates });
    renderStatus(frame.status);
    addEvents(frame.events);
    renderCharts();
  });
}

// -- control ----------------------------------------------------------------------------------------

async function refreshLoad() {
  if (!dash.control || !token()) return;
  const answer = await callJson("GET", "/dashboard/api/control/load", { headers: { Authorization: `Bearer ${token()}` } });
  if (answer.ok) {
    const l = answer.body;
    $("load-state").textContent = l.running ? `${l.mix} load at ${l.rate}/s: ${l.sent} sent, ${l.ok} ok, ${l.errors} errors` : l.sent ? `last load: ${l.sent} sent, ${l.ok} ok, ${l.errors} errors` : "no load running";
    $("token-state").textContent = "token accepted";
  } else if (answer.status === 401 || answer.status === 403) {
    $("token-state").textContent = "token refused";
  }
}

function setupControl() {
  $("control").hidden = false;
  $("token").value = token();
  $("token-state").textContent = token() ? "token set" : "no token: the buttons need it";
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token-state").textContent = "token set";
    refreshLoad();
    refreshPartitions();
  });
  $("load-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { mix: $("load-mix").value, rate: Number($("load-rate").value), seconds: Number($("load-seconds").value) };
    if (await control("POST", "load", body)) say($("control-message"), "ok", `Started a ${body.mix} load at ${body.rate} requests/s for ${body.seconds} s.`);
    refreshLoad();
  });
  $("load-stop").addEventListener("click", async () => {
    if (await control("DELETE", "load")) say($("control-message"), "ok", "Stopped the load.");
    refreshLoad();
  });
  setInterval(() => { refreshLoad(); refreshPartitions(); }, 2000);
  refreshLoad();
  refreshPartitions();
}

$("legend").replaceChildren(...Object.entries(TIER_COLOURS).map(([tier, colour]) => el("span", {}, el("i", { style: `background:${colour}` }), tier)));
callJson("GET", "/dashboard/api/config").then((config) => {
  dash.control = Boolean(config.ok && config.body.control);
  if (dash.control) setupControl();
  connect();
});
window.addEventListener("resize", renderCharts);
