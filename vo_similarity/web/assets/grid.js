// The result grid: one tile per result row, and the marks (similar / not similar)
// shown on the tiles.

import { $, el } from "./dom.js";
import { safeUrl, label } from "./format.js";
import { state, app } from "./state.js";
import { imageCache } from "./api.js";
import { updateButtons } from "./buttons.js";

function makeTile(row, index) {
  const fig = el("figure", "tile");
  fig.setAttribute("data-did", row.obs_publisher_did);
  fig.setAttribute("data-rank", String(row.rank));
  fig.setAttribute("data-index", String(index));
  fig.tabIndex = 0;
  const img = el("img", "thumb");
  const src = safeUrl(row.preview);
  if (src) img.setAttribute("src", src);
  img.setAttribute("alt", label(row));
  img.setAttribute("title", "Show images like " + label(row));
  img.decoding = "async";
  img.addEventListener("error", () => img.classList.add("broken"));
  fig.append(img);
  const cap = el("figcaption");
  const line = el("div", "line");
  line.append(el("span", "rank", String(row.rank)));
  let dist;
  if (app.current.view === "outliers") {
    dist = el("span", "dist outlier", Number(row.outlier).toFixed(3));
    dist.setAttribute("title", "outlier score");
    dist.setAttribute("data-value", String(row.outlier));
  } else {
    dist = el("span", "dist", Number(row.dist).toFixed(3));
    dist.setAttribute("title", row.score != null
      ? "distance; cosine score " + Number(row.score).toFixed(3) : "distance");
    dist.setAttribute("data-value", String(row.dist));
  }
  line.append(dist);
  cap.append(line);
  const target = el("span", "target", row.target_name || "—");
  target.setAttribute("title", row.target_name || "");
  cap.append(target);
  const credit = el("span", "credit", row.credit || "");
  credit.setAttribute("title", row.credit || "");
  cap.append(credit);
  const marks = el("div", "marks");
  const yes = el("button", "mark-similar", "similar");
  yes.type = "button";
  const no = el("button", "mark-not", "not similar");
  no.type = "button";
  marks.append(yes, no);
  cap.append(marks);
  fig.append(cap);
  return fig;
}

export function renderGrid() {
  const grid = $("grid");
  app.anchorIndex = null;
  const frag = document.createDocumentFragment();
  app.current.rows.forEach((row, i) => {
    imageCache.set(row.obs_publisher_did, row);
    frag.append(makeTile(row, i));
  });
  grid.replaceChildren(frag);
  applyMarks();
}

export function applyMarks() {
  const sim = new Set(state.sim);
  const not = new Set(state.not);
  for (const fig of $("grid").querySelectorAll(".tile")) {
    const did = fig.getAttribute("data-did");
    const s = sim.has(did);
    const n = not.has(did);
    fig.classList.toggle("similar", s);
    fig.classList.toggle("not-similar", n);
    fig.querySelector(".mark-similar").setAttribute("aria-pressed", String(s));
    fig.querySelector(".mark-not").setAttribute("aria-pressed", String(n));
  }
  $("selection-count").textContent = state.sim.length + " similar, " + state.not.length + " not similar";
  updateButtons();
}
