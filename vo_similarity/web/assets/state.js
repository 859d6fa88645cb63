// The page's shared state and its navigation: the URL state (`state`), what is on the
// screen (`app`), and navigate() / onLocationChange(), which keep the two in step with
// location.hash and history.

import { parseHash, serialize } from "./url-hash.js";

export const PAGE_SIZE = 50;

/** Application state that lives in the URL. */
export const state = { id: null, model: null, page: 1, sim: [], not: [], same: null, view: "neighbours" };

/** Page state that is not in the URL, shared by the modules. */
export const app = {
  config: null,      // api/config reply
  loadedKey: null,   // key of the view data shown in the grid
  loadSeq: 0,        // discards replies of superseded loads
  current: null,     // {view, rows, total, query, k, offset, marks}
  anchorIndex: null, // last marked tile on this page (for shift-click ranges)
  lastHash: null,
};

// navigate() shows what it changed through view.js's apply(), which itself navigates
// (to the last page); main.js hands it in at start so the two need no import cycle.
let applyView = () => {};
export function setApplyView(fn) { applyView = fn; }

/** The hash of the page's URL, "" for none. */
export function currentHash() { return location.hash === "#" ? "" : location.hash; }

/** Takes the state from the URL; the model defaults to the server's. */
export function readHash(h) {
  app.lastHash = h;
  Object.assign(state, parseHash(h));
  if (state.model == null && app.config) state.model = app.config.default_model;
}

/** Records a user change in history and shows it. */
export function navigate(changes, opts = {}) {
  Object.assign(state, changes);
  const hash = serialize(state);
  if (hash !== location.hash && !(hash === "" && location.hash === "#")) {
    const url = location.pathname + location.search + (hash || "#");
    if (opts.replace) history.replaceState(null, "", url);
    else history.pushState(null, "", url);
  }
  app.lastHash = hash;
  applyView(opts.force);
}

export function onLocationChange() {
  const h = currentHash();
  if (h === app.lastHash) return; // popstate and hashchange both fire for one step back
  readHash(h);
  // history can lead to a refinement by other marks than the one shown: compute it
  const current = app.current;
  const stale = state.view === "refine" && current && current.view === "refine" &&
    current.marks !== marksKey();
  applyView(stale);
}

export function marksKey() { return state.sim.join(",") + "|" + state.not.join(","); }
