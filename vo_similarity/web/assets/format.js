// Formatting of server data for display: safe links, positions, fields of view, labels.

/** Returns url if it is an http(s) URL (a data field must not become a javascript: link). */
export function safeUrl(url) {
  if (typeof url !== "string") return null;
  try {
    const u = new URL(url, location.href);
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch (e) { return null; }
}

function sexa(value, hours) {
  let v = hours ? value / 15 : Math.abs(value);
  let a = Math.floor(v);
  let b = Math.floor((v - a) * 60);
  let c = ((v - a) * 60 - b) * 60;
  const dig = hours ? 2 : 1;
  if (Number(c.toFixed(dig)) >= 60) { c = 0; b += 1; }
  if (b >= 60) { b = 0; a += 1; }
  const pad = (n, w) => String(n).padStart(w, "0");
  const cs = c.toFixed(dig).padStart(3 + dig, "0");
  if (hours) return pad(a % 24, 2) + "h" + pad(b, 2) + "m" + cs + "s";
  return (value < 0 ? "−" : "+") + pad(a, 2) + "°" + pad(b, 2) + "′" + cs + "″";
}

export function fmtPosition(img) {
  if (img.s_ra == null || img.s_dec == null) return "unknown";
  const dec4 = (img.s_dec >= 0 ? "+" : "") + img.s_dec.toFixed(4);
  return "RA " + img.s_ra.toFixed(4) + "°, Dec " + dec4 + "° (" +
    sexa(img.s_ra, true) + " " + sexa(img.s_dec, false) + ")";
}

export function fmtFov(fov) {
  if (fov == null) return "unknown";
  const arcmin = fov * 60;
  return fov.toFixed(4) + "°" + (fov < 1 ? " (" + arcmin.toFixed(arcmin < 10 ? 2 : 1) + "′)" : "");
}

export function label(img) { return img.target_name || img.obs_id || img.obs_publisher_did; }
