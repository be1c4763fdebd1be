// berth's live dashboard. It talks to NATS directly over WebSocket as the user in the
// URL fragment (#ws=…&user=…&pass=…&tenant=…; a fragment never reaches a server log):
// a tenant's user may only subscribe to status.<tenant>.> and publish to
// cmd.<tenant>.>, which NATS itself enforces. The page subscribes first, then asks for
// the current picture (the last status of each subject, `dashboard.snapshot`), and
// applies every update whose version is newer than what it shows.

import { wsconnect, headers } from "@nats-io/nats-core";

const params = new URLSearchParams(location.hash.slice(1));
const tenant = params.get("tenant") || "demo";
const user = params.get("user") || tenant;
const operator = tenant === "*";
const commandTenant = operator ? "system" : tenant;

/** subject → {kind, id, tenant, version, state} */
const items = new Map();

const $ = (selector) => document.querySelector(selector);

function setConnection(text, cls) {
  const badge = $("#connection");
  badge.textContent = text;
  badge.className = `badge ${cls}`;
}

function notice(text, cls) {
  const element = $("#notice");
  element.textContent = text;
  element.className = cls;
}

function feed(line) {
  const list = $("#feed");
  const entry = document.createElement("li");
  entry.textContent = `${new Date().toISOString().slice(11, 23)}  ${line}`;
  list.prepend(entry);
  while (list.children.length > 100) list.lastChild.remove();
}

function money(minor, currency) {
  const sign = minor < 0 ? "-" : "";
  const abs = Math.abs(minor);
  return `${sign}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, "0")} ${currency}`;
}

function since(time) {
  const seconds = Math.max(0, Math.floor((Date.now() - Date.parse(time)) / 1000));
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

function cell(row, content) {
  const td = document.createElement("td");
  if (content instanceof Node) td.append(content);
  else td.textContent = content ?? "";
  row.append(td);
  return td;
}

function badge(status) {
  const span = document.createElement("span");
  span.className = `badge ${status}`;
  span.textContent = status;
  span.dataset.status = status;
  return span;
}

function button(label, onClick) {
  const b = document.createElement("button");
  b.textContent = label;
  b.addEventListener("click", onClick);
  return b;
}

let nc;

async function command(itemTenant, kind, action, body) {
  const h = headers();
  h.set("ce-id", crypto.randomUUID());
  h.set("ce-actor", `user:${user}-dashboard`);
  try {
    const reply = await nc.request(`cmd.${itemTenant}.${kind}.${action}`, JSON.stringify(body), {
      timeout: 10000,
      headers: h,
    });
    const answer = reply.json();
    if (answer.status === "accepted" || answer.aggregate_id) {
      notice(`${kind} ${action}: accepted`, "accepted");
    } else {
      notice(`${kind} ${action}: rejected (${answer.code}): ${answer.message}`, "rejected");
    }
  } catch (error) {
    notice(`${kind} ${action}: ${error.message}`, "rejected");
  }
}

function sorted(kind) {
  return [...items.values()]
    .filter((item) => item.kind === kind)
    .sort((a, b) => `${a.tenant}/${a.state.name ?? a.id}`.localeCompare(`${b.tenant}/${b.state.name ?? b.id}`));
}

function renderTable(id, kind, columns) {
  const body = $(`#${id} tbody`);
  body.replaceChildren();
  for (const item of sorted(kind)) {
    const row = document.createElement("tr");
    row.dataset.id = item.id;
    columns(row, item.state, item);
    body.append(row);
  }
}

function render() {
  renderTable("vms", "vm", (row, vm) => {
    row.dataset.name = vm.name;
    cell(row, vm.name);
    cell(row, vm.tenant);
    cell(row, badge(vm.status));
    cell(row, String(vm.vcpus));
    cell(row, `${vm.memory_mb} MB`);
    cell(row, `${vm.disk_gb} GB`);
    cell(row, vm.status === "running" ? since(vm.updated_at) : "");
    const actions = cell(row, "");
    const target = { vm_id: vm.id };
    actions.append(
      button("Start", () => command(vm.tenant, "vm", "start", target)),
      button("Stop", () => command(vm.tenant, "vm", "stop", target)),
      button("Restart", () => command(vm.tenant, "vm", "restart", target)),
    );
  });
  renderTable("pods", "pod", (row, pod) => {
    row.dataset.name = pod.name;
    cell(row, pod.name);
    cell(row, pod.tenant);
    cell(row, pod.service);
    cell(row, pod.variant);
    cell(row, badge(pod.status));
    cell(row, pod.volume_mb >= 1024 ? `${pod.volume_mb / 1024} GB` : `${pod.volume_mb} MB`);
    const actions = cell(row, "");
    actions.append(
      button("Restart", () => command(pod.tenant, "pod", "restart", { pod_id: pod.id })),
      button("Reset", () => {
        const typed = prompt(`Reset wipes the volume of "${pod.name}". Type the pod's name to confirm:`);
        if (typed !== pod.name) {
          notice(`reset of ${pod.name}: not confirmed, nothing sent`, "rejected");
          return;
        }
        command(pod.tenant, "pod", "reset", { pod_id: pod.id, confirm: true });
      }),
    );
  });
  renderTable("subscriptions", "subscription", (row, s) => {
    cell(row, `${s.product}/${s.variant}`);
    cell(row, s.tenant);
    cell(row, badge(s.status));
    cell(row, money(s.price_minor, s.currency));
    cell(row, s.period_end ? s.period_end.slice(0, 16).replace("T", " ") : "");
  });
  renderTable("invoices", "invoice", (row, i) => {
    cell(row, i.number);
    cell(row, i.tenant);
    cell(row, i.month);
    cell(row, money(i.total_minor, i.currency));
    cell(row, badge(i.status));
  });
}

let scheduled = false;
function scheduleRender() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => {
    scheduled = false;
    render();
  });
}

/** Applies one status message unless it is older than what is shown. */
function apply(subject, body, live) {
  if (!body || typeof body.version !== "number") return;
  const shown = items.get(subject);
  if (shown && shown.version >= body.version) return;
  items.set(subject, body);
  if (live) feed(`${body.tenant} ${body.kind} ${body.state?.name ?? body.id}: ${body.state?.status ?? "changed"} (v${body.version})`);
  scheduleRender();
}

async function main() {
  $("#who").textContent = operator ? "operator: all tenants" : `tenant ${tenant}`;
  try {
    nc = await wsconnect({
      servers: params.get("ws") || `ws://${location.hostname}:4223`,
      user,
      pass: params.get("pass") || "",
      inboxPrefix: `_INBOX_${user}`,
      name: `dashboard ${user}`,
    });
  } catch (error) {
    setConnection(`not connected: ${error.message}`, "disconnected");
    return;
  }
  setConnection("live", "connected");
  // For the browser tests and for people poking around in the console.
  window.__berth = { nc, items };
  nc.closed().then(() => setConnection("disconnected", "disconnected"));
  const subscription = nc.subscribe(operator ? "status.>" : `status.${tenant}.>`);
  (async () => {
    for await (const message of subscription) {
      try {
        apply(message.subject, message.json(), true);
      } catch {
        // A status that is not JSON is not ours to show.
      }
    }
  })();
  const h = headers();
  h.set("ce-id", crypto.randomUUID());
  h.set("ce-actor", `user:${user}-dashboard`);
  const snapshot = await nc.request(`cmd.${commandTenant}.dashboard.snapshot`, "{}", { timeout: 10000, headers: h });
  for (const entry of snapshot.json().statuses ?? []) apply(entry.subject, entry.body, false);
  document.body.dataset.ready = "true";
  render();
  setInterval(render, 10000);
}

main();
