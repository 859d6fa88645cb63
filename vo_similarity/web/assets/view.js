// Showing the view the URL asks for: the start panel, or a page of neighbours, refined
// results or outliers with its query image, title and pager.

import { $ } from "./dom.js";
import { safeUrl, fmtPosition, fmtFov, label } from "./format.js";
import { PAGE_SIZE, state, app, navigate } from "./state.js";
import { api, busy, isBusy, fetchImage, imageCache, showError, setStatus } from "./api.js";
import { updateButtons } from "./buttons.js";
import { renderGrid, applyMarks } from "./grid.js";

function viewKey() {
  return [state.view, state.id, state.model, state.page, state.view === "neighbours" ? state.same : ""].join("|");
}

export async function apply(force) {
  syncControls();
  if (!state.id && state.view !== "outliers") {
    showStart();
    return;
  }
  $("start").hidden = true;
  $("main").hidden = false;
  if (force || viewKey() !== app.loadedKey) {
    await loadView();
  } else {
    applyMarks();
  }
}

function showStart() {
  app.loadSeq += 1; // anything still in flight belongs to a view we left
  app.loadedKey = null;
  app.current = null;
  $("start").hidden = false;
  $("main").hidden = true;
  $("grid").replaceChildren();
  setStatus("");
  document.title = "You might also like these images — vo-similarity";
  document.body.dataset.view = "start";
  updateButtons();
  if (!isBusy()) document.body.dataset.state = "ready";
}

function syncControls() {
  const model = $("model");
  if (state.model != null) model.value = String(state.model);
  $("same-target").checked = state.same != null;
  if (state.same != null) $("same-radius").value = String(state.same);
  $("page-number").value = String(state.page);
  $("matches").hidden = true;
}

async function loadView() {
  const seq = ++app.loadSeq;
  const key = viewKey();
  const st = { ...state, sim: [...state.sim], not: [...state.not] };
  const offset = (st.page - 1) * PAGE_SIZE;
  const names = { neighbours: "neighbours", refine: "refined results", outliers: "outliers" };
  setStatus("Loading " + names[st.view] + "…");
  updateButtons(true);
  await busy(async () => {
    try {
      let reply;
      let query = null;
      if (st.view === "neighbours") {
        const p = { id: st.id, model: st.model, offset, n: PAGE_SIZE };
        if (st.same != null) p.exclude_radius = st.same;
        reply = await api("neighbours", p, { cache: true });
        query = reply.query;
      } else {
        if (st.view === "refine") {
          const p = new URLSearchParams({ model: st.model, offset, n: PAGE_SIZE });
          st.sim.forEach((d) => p.append("similar", d));
          st.not.forEach((d) => p.append("not_similar", d));
          if (st.id) p.append("query", st.id);  // counts as similar, never in the result
          reply = p.toString().length > 3000
            ? await api("refine", p, { method: "POST" })
            : await api("refine", p, { cache: true });
        } else {
          reply = await api("outliers", { model: st.model, offset, n: PAGE_SIZE }, { cache: true });
        }
        if (st.id) query = await fetchImage(st.id);
      }
      if (seq !== app.loadSeq) return;
      const total = reply.total || 0;
      const lastPage = Math.max(1, Math.ceil(total / PAGE_SIZE));
      if (st.page > lastPage && total > 0) {
        navigate({ page: lastPage }, { replace: true });
        return;
      }
      if (query) imageCache.set(query.obs_publisher_did, query);
      app.current = {
        view: st.view, rows: reply.results || [], total, query, k: reply.k, offset,
        marks: st.sim.join(",") + "|" + st.not.join(","),
      };
      app.loadedKey = key;
      showError("");
      renderQuery(query);
      renderGrid();
      renderPager();
      renderTitle();
      document.body.dataset.view = st.view;
      const n = app.current.rows.length;
      const first = n ? offset + 1 : 0;
      setStatus(n
        ? "Showing " + names[st.view] + " " + first + "–" + (offset + n) + " of " + total
        : "No " + names[st.view] + " on this page.");
    } catch (e) {
      if (seq !== app.loadSeq) return;
      app.loadedKey = null;
      app.current = null;
      $("grid").replaceChildren();
      renderPager();
      if (st.id && st.view === "neighbours") renderQuery(imageCache.get(st.id) || null);
      setStatus("");
      showError(e.message);
    } finally {
      if (seq === app.loadSeq) updateButtons(false);
    }
  });
}

function setLink(a, url, text) {
  const safe = safeUrl(url);
  if (safe) { a.setAttribute("href", safe); a.classList.remove("disabled"); }
  else { a.removeAttribute("href"); a.classList.add("disabled"); }
  a.textContent = text;
}

function renderQuery(img) {
  const sec = $("query");
  sec.hidden = !img;
  sec.classList.toggle("empty", !img);
  if (!img) return;
  if (sec.dataset.did !== img.obs_publisher_did) {
    // messages about the previous query would now be misleading
    $("record-status").textContent = "";
    $("samp-status").textContent = "";
  }
  sec.dataset.did = img.obs_publisher_did;
  const pic = $("query-image");
  const src = safeUrl(img.preview);
  if (src) pic.setAttribute("src", src); else pic.removeAttribute("src");
  pic.setAttribute("alt", "Preview of " + label(img));
  $("query-target").textContent = img.target_name || "—";
  $("query-position").textContent = fmtPosition(img);
  $("query-fov").textContent = fmtFov(img.s_fov);
  $("query-credit").textContent = img.credit || "—";
  $("query-did").textContent = img.obs_publisher_did;
  const fmt = (img.access_format || "").replace(/^.*\//, "").toUpperCase();
  setLink($("query-file"), img.access_url, "Image file" + (fmt ? " (" + fmt + ")" : ""));
  setLink($("query-record"), img.record_url, "ObsCore record (VOTable)");
  document.title = label(img) + " — You might also like these images";
}

function renderTitle() {
  const t = $("view-title");
  if (state.view === "neighbours") t.textContent = "You might also like these images";
  else if (state.view === "refine") {
    t.textContent = "Refined by " + state.sim.length + " similar, " + state.not.length + " not similar";
  } else t.textContent = "The most unusual images (outlier score)";
  $("results").dataset.view = state.view;
  $("same-target").disabled = state.view !== "neighbours";
  $("same-radius").disabled = state.view !== "neighbours";
}

function renderPager() {
  const current = app.current;
  const total = current ? current.total : 0;
  const lastPage = Math.max(1, Math.ceil(total / PAGE_SIZE));
  const n = current ? current.rows.length : 0;
  const first = n ? (state.page - 1) * PAGE_SIZE + 1 : 0;
  $("page-info").textContent = n
    ? "ranks " + first + "–" + (first + n - 1) + " of " + total
    : "no results";
  const pn = $("page-number");
  pn.max = String(lastPage);
  pn.value = String(state.page);
  $("prev").disabled = !current || state.page <= 1;
  $("next").disabled = !current || state.page >= lastPage;
  $("last").disabled = !current || state.page >= lastPage;
}
