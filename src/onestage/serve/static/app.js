// onestage's page: send images to POST /predict, draw the boxes, list them, refilter by score.
"use strict";

// Every image is sent once with the slider's lowest threshold; the slider then only filters.
const REQUEST_CONF = 0.05;
const DRAW_WIDTH = 640;

const elements = {
  model: document.getElementById("model"),
  drop: document.getElementById("drop"),
  file: document.getElementById("file"),
  conf: document.getElementById("conf"),
  confValue: document.getElementById("conf-value"),
  status: document.getElementById("status"),
  latency: document.getElementById("latency"),
  canvas: document.getElementById("canvas"),
  rows: document.querySelector("#detections tbody"),
  history: document.getElementById("history"),
};
const results = []; // {name, url, picture, response, roundTripMs}
let current = -1;

// The same colours as onestage's drawings: golden-ratio hue steps.
function classColour(classId) {
  const hue = ((classId * 0.618033988749895) % 1) * 360;
  return `hsl(${hue.toFixed(1)}, 85%, 55%)`;
}

function setStatus(text, isError = false) {
  elements.status.textContent = text;
  elements.status.classList.toggle("error", isError);
}

async function loadModelCard() {
  try {
    const response = await fetch("/model");
    const card = await response.json();
    elements.model.textContent =
      `${card.architecture} · ${card.class_names.length} classes · ${card.input_size} px · ` +
      `backend ${card.backend}`;
  } catch (error) {
    elements.model.textContent = `model card unavailable (${error})`;
  }
}

function loadPicture(url) {
  return new Promise((resolve, reject) => {
    const picture = new Image();
    picture.onload = () => resolve(picture);
    picture.onerror = () => reject(new Error("the browser cannot show this image"));
    picture.src = url;
  });
}

async function detect(file) {
  const form = new FormData();
  form.append("file", file, file.name);
  const began = performance.now();
  const response = await fetch(`/predict?conf=${REQUEST_CONF}`, { method: "POST", body: form });
  const body = await response.json();
  if (!response.ok) {
    throw new Error(body.detail || `HTTP ${response.status}`);
  }
  return { response: body, roundTripMs: performance.now() - began };
}

async function handleFiles(files) {
  for (const file of files) {
    setStatus(`detecting ${file.name}…`);
    try {
      const { response, roundTripMs } = await detect(file);
      const url = URL.createObjectURL(file);
      const picture = await loadPicture(url);
      results.push({ name: file.name, url, picture, response, roundTripMs });
      addThumbnail(results.length - 1);
      show(results.length - 1);
      setStatus(`${file.name}: done`);
    } catch (error) {
      setStatus(`${file.name}: ${error.message}`, true);
    }
  }
}

function addThumbnail(index) {
  const button = document.createElement("button");
  button.type = "button";
  button.title = results[index].name;
  const thumbnail = document.createElement("img");
  thumbnail.src = results[index].url;
  thumbnail.alt = results[index].name;
  button.append(thumbnail);
  button.addEventListener("click", () => show(index));
  elements.history.append(button);
}

function show(index) {
  current = index;
  [...elements.history.children].forEach((button, i) =>
    button.classList.toggle("current", i === index));
  render();
}

function visibleDetections() {
  const threshold = Number(elements.conf.value);
  return results[current].response.detections.filter((d) => d.score >= threshold);
}

function render() {
  elements.confValue.textContent = Number(elements.conf.value).toFixed(2);
  if (current < 0) {
    return;
  }
  const { picture, response, roundTripMs } = results[current];
  const detections = visibleDetections();
  drawBoxes(picture, detections);
  fillTable(detections);
  const t = response.timings_ms;
  elements.latency.textContent =
    `server ${t.total.toFixed(1)} ms (decode ${t.decode.toFixed(1)}, forward ` +
    `${t.forward.toFixed(1)}, post-processing ${t.postprocess.toFixed(1)}) · round trip ` +
    `${roundTripMs.toFixed(1)} ms · ${response.backend}`;
}

function drawBoxes(picture, detections) {
  // Drawn at the size it is shown (up to DRAW_WIDTH px wide), so lines and labels stay crisp.
  const scale = Math.min(2, DRAW_WIDTH / picture.naturalWidth);
  const canvas = elements.canvas;
  canvas.width = Math.round(picture.naturalWidth * scale);
  canvas.height = Math.round(picture.naturalHeight * scale);
  const context = canvas.getContext("2d");
  context.drawImage(picture, 0, 0, canvas.width, canvas.height);
  const lineWidth = 2;
  context.font = "14px system-ui, sans-serif";
  context.textBaseline = "top";
  for (const d of detections) {
    const [x1, y1, x2, y2] = d.box_xyxy.map((v) => v * scale);
    const colour = classColour(d.class_id);
    context.strokeStyle = colour;
    context.lineWidth = lineWidth;
    context.strokeRect(x1, y1, x2 - x1, y2 - y1);
    const label = `${d.class_name} ${d.score.toFixed(2)}`;
    const height = 18;
    const width = context.measureText(label).width + 6;
    const top = y1 >= height ? y1 - height : y1;
    context.fillStyle = colour;
    context.fillRect(x1, top, width, height);
    context.fillStyle = "#000";
    context.fillText(label, x1 + 3, top + 2);
  }
  canvas.dataset.drawnBoxes = String(detections.length);
}

function fillTable(detections) {
  const rows = detections.map((d, i) => {
    const row = document.createElement("tr");
    row.dataset.className = d.class_name;
    row.dataset.score = String(d.score);
    row.dataset.box = d.box_xyxy.join(",");
    const swatch = `<span class="swatch" style="background:${classColour(d.class_id)}"></span>`;
    row.innerHTML =
      `<td>${i + 1}</td><td>${swatch}</td><td>${d.score.toFixed(3)}</td>` +
      `<td>${d.box_xyxy.map((v) => v.toFixed(1)).join(", ")}</td>`;
    row.children[1].append(d.class_name);
    return row;
  });
  elements.rows.replaceChildren(...rows);
}

elements.file.addEventListener("change", () => {
  handleFiles([...elements.file.files]);
  elements.file.value = "";
});
elements.conf.addEventListener("input", render);
for (const name of ["dragenter", "dragover"]) {
  elements.drop.addEventListener(name, (event) => {
    event.preventDefault();
    elements.drop.classList.add("over");
  });
}
for (const name of ["dragleave", "drop"]) {
  elements.drop.addEventListener(name, () => elements.drop.classList.remove("over"));
}
elements.drop.addEventListener("drop", (event) => {
  event.preventDefault();
  handleFiles([...event.dataTransfer.files].filter((f) => f.type.startsWith("image/")));
});
loadModelCard();
