// Finding a query image: by identifier, target name or position (a list to choose from
// when several match), or a random one.

import { $, el } from "./dom.js";
import { state, navigate } from "./state.js";
import { ApiError, api, busy, fetchImage, imageCache, showError, setStatus } from "./api.js";

function parsePosition(text) {
  const parts = text.trim().split(/[\s,]+/).filter(Boolean).map(Number);
  if (parts.length < 2 || parts.length > 3 || parts.some((x) => !Number.isFinite(x))) {
    throw new ApiError("Give a position as “RA Dec” or “RA Dec radius” in degrees, e.g. 150.1 2.2 0.5", 400);
  }
  return parts;
}

export async function onLookup(ev) {
  ev.preventDefault();
  const kind = $("lookup-kind").value;
  const value = $("lookup-value").value.trim();
  showError("");
  if (!value) { showError("Type an identifier, a target name or a position first."); return; }
  await busy(async () => {
    try {
      if (kind === "id") {
        const img = await fetchImage(value);
        goTo(img);
        return;
      }
      let reply;
      // the images of the chosen model's collection: the others have no neighbours there
      const scope = state.model != null ? { model: state.model } : {};
      if (kind === "target") reply = await api("lookup", { target: value, ...scope });
      else {
        const [ra, dec, radius] = parsePosition(value);
        const p = { ra, dec, ...scope };
        if (radius != null) p.radius = radius;
        reply = await api("lookup", p);
      }
      const images = reply.images || [];
      if (images.length === 0) showError("Nothing found for “" + value + "”.");
      else if (images.length === 1) goTo(images[0]);
      else showMatches(images);
    } catch (e) {
      showError(e.message);
    }
  });
}

function goTo(img) {
  imageCache.set(img.obs_publisher_did, img);
  // a new query starts a new selection, as clicking a thumbnail does: marks are
  // recorded relative to the query image
  navigate({ id: img.obs_publisher_did, view: "neighbours", page: 1, sim: [], not: [] });
}

function showMatches(images) {
  const ul = $("matches");
  ul.replaceChildren();
  ul.append(el("li", "matches-head", images.length + " matches; choose one:"));
  for (const img of images) {
    const li = el("li");
    const b = el("button", "match");
    b.type = "button";
    b.setAttribute("data-did", img.obs_publisher_did);
    b.append(el("span", "match-target", img.target_name || "—"));
    b.append(el("span", "match-id", img.obs_id || img.obs_publisher_did));
    if (img.sep != null) b.append(el("span", "match-sep", Number(img.sep).toFixed(4) + "°"));
    if (img.credit) b.append(el("span", "match-credit", img.credit));
    b.addEventListener("click", () => goTo(img));
    li.append(b);
    ul.append(li);
  }
  ul.hidden = false;
  setStatus(images.length + " images match; choose one.");
}

export async function onRandom() {
  showError("");
  await busy(async () => {
    try {
      const reply = await api("random", { model: state.model });
      goTo(reply.image);
    } catch (e) { showError(e.message); }
  });
}
