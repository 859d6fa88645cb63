// Marking tiles similar / not similar with the mouse (shift-click for a range) and the
// keyboard (s, x, arrows, Enter); every change goes into the URL through navigate().

import { $ } from "./dom.js";
import { state, app, navigate } from "./state.js";

export function setMark(did, kind) {
  // kind: "sim", "not" or null (unmarked); a DID is never in both lists
  state.sim = state.sim.filter((d) => d !== did);
  state.not = state.not.filter((d) => d !== did);
  if (kind === "sim") state.sim.push(did);
  if (kind === "not") state.not.push(did);
}

function toggleMark(fig, kind) {
  const did = fig.getAttribute("data-did");
  const list = kind === "sim" ? state.sim : state.not;
  setMark(did, list.includes(did) ? null : kind);
  app.anchorIndex = Number(fig.getAttribute("data-index"));
  navigate({});
}

function markRange(fig) {
  const tiles = [...$("grid").querySelectorAll(".tile")];
  const to = Number(fig.getAttribute("data-index"));
  let from = app.anchorIndex;
  if (from == null) {
    // no mark made on this page yet: the last tile already marked similar
    const marked = tiles.filter((t) => state.sim.includes(t.getAttribute("data-did")));
    from = marked.length ? Number(marked[marked.length - 1].getAttribute("data-index")) : to;
  }
  const [a, b] = from <= to ? [from, to] : [to, from];
  for (let i = a; i <= b; i++) {
    const did = tiles[i].getAttribute("data-did");
    // an explicit "not similar" inside the range stands; the clicked tile itself is marked
    if (i === to || !state.not.includes(did)) setMark(did, "sim");
  }
  app.anchorIndex = to;
  navigate({});
}

export function onGridClick(ev) {
  const fig = ev.target.closest(".tile");
  if (!fig) return;
  if (ev.target.classList.contains("thumb")) {
    navigate({ id: fig.getAttribute("data-did"), view: "neighbours", page: 1, sim: [], not: [] });
    window.scrollTo({ top: 0 });
  } else if (ev.target.closest(".mark-similar")) {
    if (ev.shiftKey) markRange(fig); else toggleMark(fig, "sim");
  } else if (ev.target.closest(".mark-not")) {
    toggleMark(fig, "not");
  }
}

export function onGridKey(ev) {
  const fig = ev.target.closest(".tile");
  if (!fig || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const onTile = ev.target === fig;
  const key = ev.key;
  if (key === "s" || key === "S") { ev.preventDefault(); toggleMark(fig, "sim"); }
  else if (key === "x" || key === "X") { ev.preventDefault(); toggleMark(fig, "not"); }
  else if (key === "ArrowLeft" || key === "ArrowRight") {
    const next = key === "ArrowLeft" ? fig.previousElementSibling : fig.nextElementSibling;
    if (next) { ev.preventDefault(); next.focus(); }
  } else if (key === "Enter" && onTile) {
    ev.preventDefault();
    navigate({ id: fig.getAttribute("data-did"), view: "neighbours", page: 1, sim: [], not: [] });
  }
}
