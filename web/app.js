// The page: asks the three servers which models they offer, and runs a
// private generation through the wasm client (which shares the request,
// talks to the servers and reconstructs the image; see client-wasm).
//
// `window.cdm` exposes the page's state and its timings (performance.now(),
// in ms, from the click on Generate) for the end-to-end test.
import init, { Generation, listModels, draw } from "./pkg/client_wasm.js";

const $ = (id) => document.getElementById(id);
const DEFAULT_MODEL = "mnist";
const IDLE_TIMEOUT_SECS = 120;
const MAX_SEED = (1n << 64n) - 1n;

const state = {
  status: "loading", // loading | ready | running | done | error | cancelled
  error: null,
  seed: null,
  previews: 0,
  timings: null,
};
window.cdm = state;

let cluster = null;
let models = [];
let generation = null;

function setStatus(status, error = null) {
  state.status = status;
  state.error = error;
  const running = status === "running";
  $("generate").disabled = running || models.length === 0;
  $("cancel").disabled = !running;
  for (const el of $("form").querySelectorAll("select, input")) {
    el.disabled = running || models.length === 0;
  }
  $("error").hidden = !error;
  $("error").textContent = error ?? "";
}

function selectedModel() {
  return models.find((m) => m.name === $("model").value);
}

// What class `label` of model `m` shows ("7", "Sneaker").
function className(m, label) {
  return m.class_names[m.class_labels.indexOf(label)];
}

function showModel() {
  const m = selectedModel();
  if (!m) return;
  $("model-info").textContent =
    `${m.image_size}×${m.image_size}, ${m.in_channels === 1 ? "grey" : `${m.in_channels} channels`}, ` +
    `${m.activation}, ${m.schedule_steps}-step schedule, ${m.frac_bits}-bit fixed point`;
  const cls = $("class");
  cls.replaceChildren(
    ...m.class_labels.map((label, i) => new Option(m.class_names[i], String(label))),
  );
  $("class-row").hidden = m.num_classes === 0;
}

function showSampler() {
  const ddpm = samplerValue() === "ddpm";
  $("steps-row").hidden = ddpm;
  $("ddpm-hint").hidden = !ddpm;
}

function samplerValue() {
  return document.querySelector('input[name="sampler"]:checked').value;
}

/** The seed field as a BigInt, a fresh random one when empty, or null if invalid. */
function seedValue() {
  const text = $("seed").value.trim();
  if (text === "") {
    return crypto.getRandomValues(new BigUint64Array(1))[0];
  }
  if (!/^[0-9]{1,20}$/.test(text)) return null;
  const s = BigInt(text);
  return s <= MAX_SEED ? s : null;
}

function formatSeconds(ms) {
  return `${(ms / 1000).toFixed(1)} s`;
}

function showProgress(step, total, t0) {
  $("progress").max = total;
  $("progress").value = step;
  $("progress-text").textContent = `step ${step} / ${total} · ${formatSeconds(performance.now() - t0)}`;
}

function showImage(ev) {
  draw($("image"), ev.width, ev.height, ev.rgba);
}

function offerDownload(name) {
  const link = $("download");
  $("image").toBlob((blob) => {
    if (link.href) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(blob);
    link.download = name;
    link.hidden = false;
  }, "image/png");
}

function generate(event) {
  event.preventDefault();
  const model = selectedModel();
  const seed = seedValue();
  if (!model) return;
  if (seed === null) {
    setStatus("ready", "The seed must be a whole number from 0 to 18446744073709551615.");
    return;
  }
  const sampler = samplerValue();
  const steps = Number($("steps").value);
  if (sampler === "ddim" && !(Number.isInteger(steps) && steps >= 1 && steps <= 1000)) {
    setStatus("ready", "Steps must be a whole number from 1 to 1000.");
    return;
  }
  const options = {
    model: model.name,
    class_label: model.num_classes > 0 ? Number($("class").value) : null,
    sampler,
    steps: sampler === "ddim" ? steps : model.schedule_steps,
    variant: $("variant").value,
    batch: 1,
    seed,
    preview: $("preview").checked,
    idle_timeout_secs: IDLE_TIMEOUT_SECS,
  };
  const t0 = performance.now();
  const timings = { firstProgressMs: null, finalMs: null, steps: null };
  state.timings = timings;
  state.seed = seed.toString();
  state.previews = 0;
  $("download").hidden = true;
  $("timings").textContent = "";
  $("caption").textContent = `Seed ${seed}: sharing the request…`;
  showProgress(0, options.steps, t0);
  const ticker = setInterval(() => {
    if (state.status === "running") {
      showProgress($("progress").value, $("progress").max, t0);
    }
  }, 250);
  const finish = (status, error = null) => {
    clearInterval(ticker);
    setStatus(status, error);
  };
  const onEvent = (ev) => {
    switch (ev.kind) {
      case "accepted":
        $("caption").textContent = `Seed ${seed}: the servers agreed and are computing.`;
        break;
      case "progress":
        if (timings.firstProgressMs === null) timings.firstProgressMs = performance.now() - t0;
        timings.steps = ev.total;
        showProgress(ev.step, ev.total, t0);
        break;
      case "preview":
        state.previews += 1;
        showImage(ev);
        $("caption").textContent = `Preview before step ${ev.step + 1} (seen only by this page)`;
        break;
      case "done": {
        showImage(ev);
        timings.finalMs = performance.now() - t0;
        showProgress($("progress").max, $("progress").max, t0);
        const cls = options.class_label === null ? "" : `, ${className(model, options.class_label)}`;
        $("caption").textContent = `${model.name}${cls}, ${sampler.toUpperCase()}, seed ${seed}`;
        $("timings").textContent =
          `First progress after ${formatSeconds(timings.firstProgressMs ?? timings.finalMs)}, ` +
          `image after ${formatSeconds(timings.finalMs)}.`;
        const label = options.class_label === null ? "" : `-class${options.class_label}`;
        offerDownload(`cipherdm-${model.name}${label}-seed${seed}.png`);
        finish("done");
        break;
      }
      case "cancelled":
        $("caption").textContent = "Cancelled.";
        finish("cancelled");
        break;
      case "error":
        $("caption").textContent = "The generation failed.";
        finish("error", ev.message);
        break;
    }
  };
  const testSeed = cluster.insecure_share_seed;
  try {
    if (generation) generation.free();
    state.status = "running";
    generation = Generation.start(
      cluster.servers,
      model,
      options,
      onEvent,
      testSeed === undefined ? undefined : BigInt(testSeed),
    );
    setStatus(state.status, state.error);
  } catch (e) {
    generation = null;
    finish("error", `Could not start: ${e.message ?? e}`);
  }
}

async function loadModels() {
  setStatus("loading");
  try {
    const reply = await fetch("cluster.json", { cache: "no-store" });
    if (!reply.ok) throw new Error(`cluster.json: HTTP ${reply.status}`);
    cluster = await reply.json();
    $("insecure").hidden = cluster.insecure_share_seed === undefined;
    models = await listModels(cluster.servers, 15);
  } catch (e) {
    models = [];
    $("cluster").textContent = "The servers could not be reached.";
    setStatus("error", `${e.message ?? e} — reload the page to try again.`);
    return;
  }
  if (models.length === 0) {
    $("cluster").textContent = "The three servers offer no model in common.";
    setStatus("error", "No model is available: each server must hold the same dealt model.");
    return;
  }
  const select = $("model");
  select.replaceChildren(...models.map((m) => new Option(m.name, m.name)));
  select.value = (models.find((m) => m.name === DEFAULT_MODEL) ?? models[0]).name;
  $("cluster").textContent = `Connected to 3 servers · ${models.length} model${models.length > 1 ? "s" : ""}`;
  showModel();
  setStatus("ready");
}

async function main() {
  await init();
  $("model").addEventListener("change", showModel);
  for (const r of document.querySelectorAll('input[name="sampler"]')) {
    r.addEventListener("change", showSampler);
  }
  $("form").addEventListener("submit", generate);
  $("cancel").addEventListener("click", () => generation?.cancel());
  showSampler();
  await loadModels();
}

main().catch((e) => setStatus("error", `The page could not start: ${e.message ?? e}`));
