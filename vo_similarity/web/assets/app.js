// vo-similarity web page "You might also like these images": the entry module.
//
// Plain ES2020 modules, no build step, nothing from outside the origin. The page's whole
// state lives in location.hash (url-hash.js), so every view is a URL. All server text
// goes in through textContent / setAttribute: never innerHTML with data.
//
// Modules: state.js (URL state, navigation), url-hash.js (hash format), api.js
// (requests, busy, errors, status), view.js (the view shown), grid.js (tiles),
// selection.js (marking), buttons.js, lookup.js, record.js, samp-send.js (SAMP),
// main.js (wiring, start), dom.js and format.js (helpers).

import { init } from "./main.js";

// samp.js is the npm sampjs file, which ends in a CommonJS `module.exports = { samp }`.
// In a browser that line would throw a ReferenceError after `samp` is defined. This
// module script comes before it in index.html, and non-async module scripts run with the
// deferred ones in document order, so this runs first and gives it something to write to
// (no module of the page needs `module` earlier).
if (typeof globalThis.module === "undefined") {
  globalThis.module = { exports: {} };
}

document.addEventListener("DOMContentLoaded", init);
