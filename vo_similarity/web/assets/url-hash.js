// The URL-hash format of the page: parsing and serializing, nothing else.
//
// The page's whole state lives in location.hash (see docs / the web contract), so every
// view is a URL: #id=…&model=…&page=…&sim=…,…&not=…,…&same=…&view=….

export const VIEWS = ["neighbours", "refine", "outliers"];

/** Decodes one hash value: URLSearchParams syntax ('+' is a space). */
function dec(s) {
  try { return decodeURIComponent(s.replace(/\+/g, " ")); } catch (e) { return s; }
}

/** Splits a sim/not value into DIDs; tolerates a value encoded twice by URLSearchParams. */
function decList(raw) {
  if (!raw) return [];
  let s = raw;
  if (!s.includes(",") && /%25[0-9A-Fa-f]{2}/.test(s)) s = dec(s); // "%252F" -> "%2F"
  else if (!s.includes(",") && /%2C/i.test(s) && /%25/.test(s)) s = dec(s);
  return s.split(",").filter((x) => x !== "").map(dec);
}

export function parseHash(hash) {
  const out = { id: null, model: null, page: 1, sim: [], not: [], same: null, view: null };
  const h = hash.replace(/^#/, "");
  for (const part of h.split("&")) {
    if (!part) continue;
    const eq = part.indexOf("=");
    const key = eq < 0 ? part : part.slice(0, eq);
    const raw = eq < 0 ? "" : part.slice(eq + 1);
    if (key === "id") out.id = dec(raw) || null;
    else if (key === "model") out.model = Number.parseInt(dec(raw), 10) || null;
    else if (key === "page") out.page = Math.max(1, Number.parseInt(dec(raw), 10) || 1);
    else if (key === "sim") out.sim = decList(raw);
    else if (key === "not") out.not = decList(raw);
    else if (key === "same") {
      const r = Number.parseFloat(dec(raw));
      out.same = Number.isFinite(r) && r > 0 ? r : null;
    } else if (key === "view") out.view = VIEWS.includes(dec(raw)) ? dec(raw) : null;
  }
  // a DID can't be both; similar wins as it was the stronger statement
  out.not = out.not.filter((d) => !out.sim.includes(d));
  out.sim = [...new Set(out.sim)];
  out.not = [...new Set(out.not)];
  if (!out.view) out.view = "neighbours";
  return out;
}

export function serialize(st) {
  const parts = [];
  if (st.id) parts.push("id=" + encodeURIComponent(st.id));
  if (st.model != null) parts.push("model=" + st.model);
  if (st.id || st.view !== "neighbours") parts.push("page=" + st.page);
  if (st.sim.length) parts.push("sim=" + st.sim.map(encodeURIComponent).join(","));
  if (st.not.length) parts.push("not=" + st.not.map(encodeURIComponent).join(","));
  if (st.same != null) parts.push("same=" + st.same);
  if (st.id || st.view !== "neighbours") parts.push("view=" + st.view);
  return parts.length ? "#" + parts.join("&") : "";
}
