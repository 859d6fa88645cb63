// Sending to SAMP clients through sampjs (window.samp, from assets/samp.js): the results
// shown as a TAP query to TOPCAT, the query image to Aladin.

import { $ } from "./dom.js";
import { label } from "./format.js";
import { state, app } from "./state.js";

let connector = null;

function sampConnector() {
  if (!connector) {
    connector = new window.samp.Connector("vo-similarity web page", {
      "samp.name": "vo-similarity web page",
      "samp.description.text": "You might also like these images: browse an archive by visual similarity",
      "home.page": location.href.replace(/#.*$/, ""),
    });
  }
  return connector;
}

function adqlString(s) { return "'" + String(s).replace(/'/g, "''") + "'"; }

function resultAdql(current) {
  if (current.view === "neighbours") {
    const k = current.k || current.total;
    let where = "query_did = " + adqlString(current.query.obs_publisher_did) + " AND model_id = " + Number(state.model);
    if (state.same != null) {
      // the page's same-target toggle, so TOPCAT gets the rows the page shows
      where += " AND DISTANCE(POINT('ICRS', s_ra, s_dec), POINT('ICRS', query_ra, query_dec)) > " + Number(state.same);
    }
    return "SELECT TOP " + k + " * FROM similarity.similar_by_model WHERE " + where + " ORDER BY rank";
  }
  const dids = current.rows.map((r) => adqlString(r.obs_publisher_did));
  return "SELECT * FROM ivoa.obscore WHERE obs_publisher_did IN (" + dids.join(", ") + ")";
}

function sampSend(mtype, params) {
  const status = $("samp-status");
  status.classList.remove("bad");
  status.textContent = "Connecting to the SAMP hub…";
  const fail = (err) => {
    const msg = err && (err.faultString || err.message) ? (err.faultString || err.message) : String(err);
    status.textContent = "SAMP: " + msg + " — is a SAMP hub (e.g. TOPCAT or Aladin) running?";
    status.classList.add("bad");
  };
  try {
    sampConnector().runWithConnection((conn) => {
      conn.notifyAll([new window.samp.Message(mtype, params)], (recipients) => {
        const n = Array.isArray(recipients) ? recipients.length : 0;
        status.textContent = "sent to the SAMP hub (" + mtype + ", " + n + " recipient" + (n === 1 ? "" : "s") + ")";
      }, fail);
    }, fail);
  } catch (e) { fail(e); }
}

export function onSampTopcat() {
  const current = app.current;
  if (!current || !current.rows.length || !app.config) return;
  const adql = resultAdql(current);
  const url = app.config.tap_url.replace(/\/$/, "") +
    "/sync?REQUEST=doQuery&LANG=ADQL&FORMAT=votable&QUERY=" + encodeURIComponent(adql);
  const what = current.view === "neighbours" ? "neighbours of " + label(current.query)
    : current.view === "refine" ? "refined results page " + state.page : "outliers page " + state.page;
  sampSend("table.load.votable", {
    url, "table-id": "vosim-" + current.view + "-" + Date.now(), name: what + " (model " + state.model + ")",
  });
}

export function onSampAladin() {
  const current = app.current;
  if (!current || !current.query) return;
  const q = current.query;
  sampSend("image.load.fits", { url: q.access_url, "image-id": q.obs_publisher_did, name: label(q) });
}
