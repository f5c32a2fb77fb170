// kd pipeline page: start / stop / resume through the JSON API, live state from /api/events (server-sent events).
"use strict";
const $ = (id) => document.getElementById(id);
const backends = JSON.parse($("backends").textContent);
const form = $("start-form");
let shownResults = null;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function message(text, kind) {
  const box = $("message");
  box.hidden = !text;
  box.textContent = text || "";
  box.className = "message " + (kind || "");
}

async function post(url, body) {
  const res = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
                                body: body ? JSON.stringify(body) : "{}"});
  let data = {};
  try { data = await res.json(); } catch (e) { data = {error: "The server answered " + res.status}; }
  if (!res.ok) throw new Error(data.error || data.detail || ("HTTP " + res.status));
  return data;
}

function syncBackend() {
  const t = form.elements.teacher.value;
  $("base-url-field").hidden = (backends.teachers[t] || {}).backend === "local";  // local, local_1.5b
}
form.elements.teacher.addEventListener("change", () => {
  const d = backends.teachers[form.elements.teacher.value] || {};
  form.elements.teacher_model.value = d.model || "";
  form.elements.teacher_base_url.value = d.base_url || "";
  syncBackend();
});
form.elements.student.addEventListener("change", () => {
  const d = backends.students[form.elements.student.value] || {};
  form.elements.student_model.value = d.model || "";
});
syncBackend();

form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const body = {};
  for (const [k, v] of new FormData(form).entries()) body[k] = v;
  message("Starting ...", "info");
  try {
    const data = await post("/api/start", body);
    message("Started " + data.run + ".", "ok");
    form.elements.run_name.value = "";
    $("results").replaceChildren();
    shownResults = null;
  } catch (e) {
    message(e.message, "error");
  }
});

$("stop-button").addEventListener("click", async () => {
  try { await post("/api/stop"); } catch (e) { message(e.message, "error"); }
});

async function resume(name) {
  message("Resuming " + name + " ...", "info");
  try {
    await post("/api/runs/" + encodeURIComponent(name) + "/resume");
    message("Resumed " + name + ".", "ok");
    $("results").replaceChildren();
    shownResults = null;
  } catch (e) {
    message(e.message, "error");
  }
}

function renderRuns(runs) {
  const body = $("runs-body");
  body.replaceChildren();
  if (!runs.length) {
    const tr = el("tr"); const td = el("td", "No runs yet.", "muted"); td.colSpan = 6; tr.append(td); body.append(tr);
  }
  for (const r of runs) {
    const tr = el("tr"); tr.dataset.run = r.name;
    const name = el("td"); const a = el("a", r.name); a.href = "/runs/" + encodeURIComponent(r.name); name.append(a);
    const status = el("td"); status.append(el("span", r.status, "status status-" + r.status.replace(" ", "-")));
    if (r.error) status.append(el("div", r.error, "small error-text"));
    const act = el("td");
    if (r.resumable) {
      const b = el("button", "Resume", "resume"); b.addEventListener("click", () => resume(r.name)); act.append(b);
    } else if (r.has_report) {
      const a2 = el("a", "results"); a2.href = "/runs/" + encodeURIComponent(r.name); act.append(a2);
    }
    tr.append(name, el("td", r.created || ""), el("td", r.cycles ?? ""), el("td", String(r.steps_done)), status, act);
    body.append(tr);
  }
}

function renderProgress(active, w) {
  $("progress-empty").hidden = !!w;
  $("progress-body").hidden = !w;
  $("start-button").disabled = !!active;
  $("stop-button").hidden = !active;
  if (!w) return;
  $("p-name").textContent = w.name;
  const st = $("p-status"); st.textContent = w.status; st.className = "status status-" + w.status.replace(" ", "-");
  let now = "";
  if (w.status === "running") {
    now = w.current_step ? ((w.current_cycle ? "Cycle " + w.current_cycle + " of " + w.cycles + ": " : "") +
      "step " + w.current_step + " running for " + w.current_step_elapsed_s + " s") : "finishing (report) ...";
  } else if (w.status === "finished") {
    now = "Finished: " + w.steps.length + " steps.";
  }
  $("p-now").textContent = now;
  $("p-bar").style.width = (w.n_steps ? 100 * w.steps.length / w.n_steps : 0) + "%";
  $("p-error").hidden = !w.error; $("p-error").textContent = w.error || "";
  const steps = $("p-steps"); steps.replaceChildren();
  for (const s of w.steps) {
    const tr = el("tr"); tr.append(el("td", s.key), el("td", s.seconds.toFixed(1))); steps.append(tr);
  }
  if (w.current_step) {
    const tr = el("tr", null, "current"); tr.append(el("td", w.current_step + " (running)"), el("td", "...")); steps.append(tr);
  }
  const log = $("p-log");
  const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.textContent = w.log.join("\n");
  if (atBottom) log.scrollTop = log.scrollHeight;
  if (w.status === "finished" && w.has_report && shownResults !== w.name) {
    shownResults = w.name;
    fetch("/runs/" + encodeURIComponent(w.name) + "/results").then((r) => r.text()).then((html) => {
      $("results").innerHTML = html;  // rendered by the server with autoescaping
    });
  }
}

function render(state) {
  renderRuns(state.runs);
  renderProgress(state.active, state.watch);
}

render(JSON.parse($("initial-state").textContent));
const events = new EventSource("/api/events");
events.onmessage = (ev) => render(JSON.parse(ev.data));
