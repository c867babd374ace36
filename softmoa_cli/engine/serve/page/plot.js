// The timeline plot, as inline SVG sized to its box: the top labels' scores over time (a line
// through the middles of the windows that rank them) and below it the segments, in lanes where
// they overlap (multi-label).
const SVG = "http://www.w3.org/2000/svg";
const SERIES = 4;  // lines drawn; style.css colours them --series-0.. and the rest --other
const LEFT = 34, RIGHT = 10, TOP = 8, BOTTOM = 128, LANES = 152, LANE = 20;
const STEPS = [0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600];

function node(tag, attributes, parent, text) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  if (text !== undefined) element.textContent = text;
  parent?.append(element);
  return element;
}

// The labels to draw: those with the highest peak scores along the timeline.
function topLabels(timeline, count) {
  const peaks = new Map();
  for (const window of timeline) {
    for (const { label, score } of window.predictions) peaks.set(label, Math.max(peaks.get(label) ?? 0, score));
  }
  return [...peaks].sort((a, b) => b[1] - a[1]).slice(0, count).map(([label]) => label);
}

// Each segment's lane: the first whose last segment ended by its start (segments come sorted by start).
function lanesOf(segments) {
  const ends = [];
  return segments.map((segment) => {
    let lane = ends.findIndex((end) => end <= segment.start);
    if (lane < 0) lane = ends.push(0) - 1;
    ends[lane] = segment.end;
    return lane;
  });
}

export function drawPlot(box, legend, result) {
  const { timeline, segments } = result;
  const width = Math.max(box.clientWidth, 240);
  const end = Math.max(...timeline.map((window) => window.end));
  const x = (seconds) => LEFT + (seconds / end) * (width - LEFT - RIGHT);
  const y = (score) => TOP + (1 - score) * (BOTTOM - TOP);
  const labels = topLabels(timeline, SERIES);
  const color = (label) => (labels.includes(label) ? `var(--series-${labels.indexOf(label)})` : "var(--other)");
  const lanes = lanesOf(segments);
  const height = LANES + LANE * Math.max(...lanes, -1) + LANE + 4;
  const svg = node("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
                           "aria-label": `Scores of ${labels.join(", ")} over ${end} s; ${segments.length} segments` });

  for (const score of [0, 0.5, 1]) {
    node("line", { x1: LEFT, x2: width - RIGHT, y1: y(score), y2: y(score), class: "grid" }, svg);
    node("text", { x: LEFT - 6, y: y(score) + 4, "text-anchor": "end", class: "tick" }, svg, score);
  }
  const step = STEPS.find((s) => end / s <= (width - LEFT - RIGHT) / 60) ?? STEPS.at(-1);
  for (let k = 0; k * step <= end + 1e-9; k++) {
    node("text", { x: x(k * step), y: BOTTOM + 16, "text-anchor": "middle", class: "tick" }, svg,
         `${+(k * step).toFixed(2)} s`);
  }

  for (const label of labels) {
    let path = "";
    let pen = "M";
    for (const window of timeline) {
      const found = window.predictions.find((p) => p.label === label);
      if (!found) {
        pen = "M";
        continue;
      }
      const [px, py] = [x((window.start + window.end) / 2).toFixed(1), y(found.score).toFixed(1)];
      path += `${pen}${px},${py} `;
      pen = "L";
      node("circle", { cx: px, cy: py, r: 2.5, style: `fill: ${color(label)}` }, svg);
    }
    node("path", { d: path, style: `stroke: ${color(label)}`, class: "line" }, svg);
  }

  segments.forEach((segment, i) => {
    const [left, right, top] = [x(segment.start), x(segment.end), LANES + LANE * lanes[i]];
    const bar = node("rect", { x: left, y: top, width: Math.max(right - left, 1), height: LANE - 3, rx: 3,
                               style: `fill: ${color(segment.label)}` }, svg);
    node("title", {}, bar, `${segment.label}: ${segment.start}–${segment.end} s, score ${segment.score.toFixed(3)}`);
    if (right - left > 8 * segment.label.length + 8) {
      node("text", { x: (left + right) / 2, y: top + LANE - 8, "text-anchor": "middle", class: "on-bar" }, svg,
           segment.label);
    }
  });

  box.replaceChildren(svg);
  legend.replaceChildren(...labels.map((label) => {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = color(label);
    item.append(swatch, label);
    return item;
  }));
}
