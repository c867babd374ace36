// The page softmoa serve shows at /: pick a task, give it a file (chosen, dropped or recorded),
// and show what POST /v1/tasks/NAME/predict answers: the top labels, and along a timeline the
// scores over time and the segments.
import { drawPlot } from "/page/plot.js";
import { Recorder } from "/page/record.js";

const $ = (id) => document.getElementById(id);
const TITLES = { singlelabel: "single-label", multilabel: "multi-label" };

let tasks = [];
let audio = null;   // {blob, name}: what the next Score sends
let shown = null;   // the result on the page, redrawn when the plot's width changes
let sent = 0;       // requests sent; only the latest one's answer is shown

function el(tag, text = "", className = "") {
  const node = document.createElement(tag);
  node.textContent = text;
  if (className) node.className = className;
  return node;
}

function say(text, state) {
  $("status").textContent = text;
  $("status").dataset.state = state;
  $("error").hidden = true;
}

function showError(message) {
  say("", "error");
  $("error").textContent = message;
  $("error").hidden = false;
  $("output").hidden = true;
}

// A JSON answer of the API; its {"error": ...} (or a network failure) thrown as an Error.
async function api(path, options) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new Error(`could not reach the server (${error.message})`);
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function currentTask() {
  return tasks.find((task) => task.name === $("task").value);
}

function describeTask() {
  const task = currentTask();
  if (!task) return;
  const facts = { Labels: task.labels.length, Task: TITLES[task.task] || task.task, Method: task.method,
                  Window: `${task.window_seconds} s` };
  $("task-info").replaceChildren(...Object.entries(facts).map(([key, value]) => {
    const fact = el("div");
    fact.append(el("dt", key), el("dd", value));
    return fact;
  }));
  updateThreshold();
}

// A threshold applies to a multi-label task, or to a timeline's segments.
function updateThreshold() {
  const task = currentTask();
  $("threshold").disabled = !$("timeline").checked && task?.task !== "multilabel";
}

async function loadTasks() {
  try {
    tasks = await api("/v1/tasks");
  } catch (error) {
    return showError(error.message);
  }
  if (!tasks.length) return showError("this server serves no tasks yet");
  $("task").replaceChildren(...tasks.map((task) => new Option(task.name, task.name)));
  describeTask();
  say("Choose, drop or record an audio file.", "ready");
}

// The player's duration of the audio in seconds (NaN when the browser cannot read it).
function loadPlayer(blob) {
  const player = $("player");
  if (player.src) URL.revokeObjectURL(player.src);
  const duration = new Promise((resolve) => {
    player.onloadedmetadata = () => resolve(player.duration);
    player.onerror = () => {
      player.hidden = true;
      resolve(NaN);
    };
  });
  player.src = URL.createObjectURL(blob);
  player.hidden = false;
  return duration;
}

// Take a file to score; a file longer than the task's window turns the timeline on, a shorter one off.
async function useAudio(blob, name) {
  audio = { blob, name };
  const seconds = await loadPlayer(blob);
  const task = currentTask();
  if (task && Number.isFinite(seconds)) $("timeline").checked = seconds > task.window_seconds;
  updateThreshold();
  $("form").requestSubmit();
}

async function score(event) {
  event.preventDefault();
  const task = currentTask();
  if (!task) return showError("no task to score with");
  if (!audio) return showError("choose, drop or record an audio file first");
  const query = new URLSearchParams({ top_k: $("top-k").value || "5" });
  if ($("timeline").checked) query.set("timeline", "true");
  if (!$("threshold").disabled && $("threshold").value !== "") query.set("threshold", $("threshold").value);
  const body = new FormData();
  body.append("audio", audio.blob, audio.name);
  const mine = ++sent;
  say(`Scoring ${audio.name} with ${task.name}…`, "busy");
  const started = performance.now();
  try {
    const result = await api(`/v1/tasks/${encodeURIComponent(task.name)}/predict?${query}`, { method: "POST", body });
    if (mine !== sent) return;
    render(result, task);
    say(`Scored in ${Math.round(performance.now() - started)} ms.`, "done");
  } catch (error) {
    if (mine === sent) showError(error.message);
  }
}

function predictionRow(prediction, marked) {
  const row = el("li", "", marked ? "prediction positive" : "prediction");
  const bar = el("span", "", "bar");
  const fill = el("span", "", "fill");
  fill.style.width = `${prediction.score * 100}%`;
  bar.append(fill);
  if (prediction.threshold !== undefined) {
    const tick = el("span", "", "threshold");
    tick.style.left = `${prediction.threshold * 100}%`;
    bar.append(tick);
  }
  bar.setAttribute("aria-hidden", "true");
  row.append(el("span", prediction.label, "label"), bar, el("span", prediction.score.toFixed(3), "score"));
  if (marked) {
    const mark = el("span", "✓", "mark");
    mark.setAttribute("aria-hidden", "true");
    row.append(mark, el("span", "positive", "visually-hidden"));
  }
  return row;
}

function segmentRow(segment) {
  const row = el("tr", "", "segment");
  row.append(el("td", segment.start.toFixed(2), "start"), el("td", segment.end.toFixed(2), "end"),
             el("td", segment.label, "label"), el("td", segment.score.toFixed(3), "score"));
  return row;
}

function render(result, task) {
  shown = result;
  const positive = new Set((result.positive || []).map((p) => p.label));
  $("result-title").textContent = `${result.file} · ${task.name}`;
  $("predictions").replaceChildren(...result.predictions.map((p) => predictionRow(p, positive.has(p.label))));
  $("positives").hidden = !result.positive;
  if (result.positive) {
    const names = result.positive.map((p) => p.label).join(", ");
    $("positives").textContent = `✓ at or above its threshold: ${names || "no label"}`;
  }
  $("timeline-view").hidden = !result.timeline;
  $("output").hidden = false;
  if (!result.timeline) return;
  $("segments").tBodies[0].replaceChildren(...result.segments.map(segmentRow));
  if (!result.segments.length) {
    const none = el("td", "none: no stretch of the file reaches a threshold");
    none.colSpan = 4;
    $("segments").tBodies[0].insertRow().append(none);
  }
  drawPlot($("plot"), $("legend"), result);
}

function dropZone() {
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) useAudio(file, file.name);
  });
}

const recorder = new Recorder((seconds) => {
  $("record").textContent = `Stop (${seconds.toFixed(1)} s)`;
});

async function toggleRecording() {
  const button = $("record");
  try {
    if (recorder.recording) {
      button.setAttribute("aria-pressed", "false");
      button.textContent = "Record";
      return useAudio(await recorder.stop(), "recording.wav");
    }
    await recorder.start();
    button.setAttribute("aria-pressed", "true");
    say("Recording… press Stop to score it.", "recording");
  } catch (error) {
    showError(error.message);
  }
}

$("form").addEventListener("submit", score);
$("task").addEventListener("change", describeTask);
$("timeline").addEventListener("change", updateThreshold);
$("file").addEventListener("change", () => {
  const file = $("file").files[0];
  if (file) useAudio(file, file.name);
});
$("record").addEventListener("click", toggleRecording);
dropZone();
let plotWidth = 0;
new ResizeObserver(() => {
  const width = $("plot").clientWidth;
  if (shown?.timeline && width !== plotWidth) drawPlot($("plot"), $("legend"), shown);
  plotWidth = width;
}).observe($("plot"));
loadTasks();
