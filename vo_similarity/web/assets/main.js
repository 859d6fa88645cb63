// Wiring and start: the event handlers of the page's controls, the model list from
// api/config, and the first view from the URL.

import { $, el } from "./dom.js";
import { PAGE_SIZE, state, app, navigate, onLocationChange, setApplyView, currentHash, readHash } from "./state.js";
import { api, busy, showError } from "./api.js";
import { updateButtons } from "./buttons.js";
import { apply } from "./view.js";
import { setMark, onGridClick, onGridKey } from "./selection.js";
import { onLookup, onRandom } from "./lookup.js";
import { onRecord } from "./record.js";
import { onSampTopcat, onSampAladin } from "./samp-send.js";

function gotoPage(page) {
  const lastPage = app.current ? Math.max(1, Math.ceil(app.current.total / PAGE_SIZE)) : 1;
  const p = Math.min(Math.max(1, Math.trunc(page) || 1), lastPage);
  if (p !== state.page) navigate({ page: p });
  else $("page-number").value = String(p);
}

function onSameChange() {
  const r = Number.parseFloat($("same-radius").value);
  const radius = Number.isFinite(r) && r > 0 ? r : 0.5;
  if ($("same-target").checked) navigate({ same: radius, page: 1 });
  else if (state.same != null) navigate({ same: null, page: 1 });
}

function wire() {
  $("lookup").addEventListener("submit", onLookup);
  $("lookup-kind").addEventListener("change", () => {
    const ph = { id: "ivo://… or obs_id", target: "e.g. M 31", position: "RA Dec [radius] in degrees" };
    $("lookup-value").setAttribute("placeholder", ph[$("lookup-kind").value]);
  });
  $("random").addEventListener("click", onRandom);
  $("model").addEventListener("change", () => navigate({ model: Number($("model").value), page: 1 }));
  $("outliers").addEventListener("click", () => navigate({ view: "outliers", page: 1 }));
  $("same-target").addEventListener("change", onSameChange);
  $("same-radius").addEventListener("change", () => { if ($("same-target").checked) onSameChange(); });
  $("grid").addEventListener("click", onGridClick);
  $("grid").addEventListener("keydown", onGridKey);
  // a shift-click must not select the text between the two tiles
  $("grid").addEventListener("mousedown", (ev) => { if (ev.shiftKey) ev.preventDefault(); });
  $("select-page").addEventListener("click", () => {
    if (!app.current) return;
    app.current.rows.forEach((r) => setMark(r.obs_publisher_did, "sim"));
    navigate({});
  });
  $("clear-selection").addEventListener("click", () => navigate({ sim: [], not: [] }));
  $("refine").addEventListener("click", () => navigate({ view: "refine", page: 1 }, { force: true }));
  $("back-to-neighbours").addEventListener("click", () => navigate({ view: "neighbours", page: 1 }));
  $("record").addEventListener("click", onRecord);
  $("prev").addEventListener("click", () => gotoPage(state.page - 1));
  $("next").addEventListener("click", () => gotoPage(state.page + 1));
  $("last").addEventListener("click", () => gotoPage(Infinity));
  $("page-number").addEventListener("change", () => gotoPage(Number($("page-number").value)));
  $("page-number").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") { ev.preventDefault(); gotoPage(Number($("page-number").value)); }
  });
  $("samp-topcat").addEventListener("click", onSampTopcat);
  $("samp-aladin").addEventListener("click", onSampAladin);
  window.addEventListener("popstate", onLocationChange);
  window.addEventListener("hashchange", onLocationChange);
}

function fillModels() {
  const sel = $("model");
  sel.replaceChildren();
  for (const m of app.config.models) {
    const opt = el("option", null, (m.name || "model " + m.model_id) +
      (m.category ? " (" + m.category + ")" : "") + (m.collection ? " — " + m.collection : "") +
      (m.n_images != null ? ", " + m.n_images + " images" : ""));
    opt.value = String(m.model_id);
    sel.append(opt);
  }
}

export async function init() {
  setApplyView(apply);
  wire();
  updateButtons();
  await busy(async () => {
    try {
      app.config = await api("config", {});
      fillModels();
    } catch (e) {
      showError("The page could not load its configuration: " + e.message);
      $("start").hidden = false;
      return;
    }
    readHash(currentHash());
    await apply(false);
  });
}
