// Enabling and disabling the page's buttons from the state, and the SAMP buttons'
// explanation where sampjs did not load.

import { $ } from "./dom.js";
import { state, app } from "./state.js";
import { isBusy } from "./api.js";

export function updateButtons(loading) {
  const current = app.current;
  const isLoading = loading ?? isBusy();
  const marked = state.sim.length + state.not.length;
  $("refine").disabled = state.sim.length === 0;
  $("clear-selection").disabled = marked === 0;
  $("select-page").disabled = !current || current.rows.length === 0;
  $("back-to-neighbours").disabled = !state.id || state.view === "neighbours";
  $("back-to-neighbours").hidden = state.view === "neighbours";
  $("record").disabled = !state.id || marked === 0;
  $("record").title = state.id ? "Record your selections for the archive"
    : "Choose a query image first: a selection is recorded relative to it";
  const hasSamp = typeof window.samp !== "undefined" && window.samp && window.samp.Connector;
  $("samp-topcat").disabled = !hasSamp || !current || current.rows.length === 0;
  $("samp-aladin").disabled = !hasSamp || !(current && current.query);
  if (!hasSamp) {
    const why = "SAMP is unavailable: the sampjs library (assets/samp.js) did not load";
    $("samp-topcat").title = why;
    $("samp-aladin").title = why;
  }
  document.body.classList.toggle("is-loading", !!isLoading);
}
