// Talking to the page's API (api/<op>) and telling the user about it: requests and
// their reply cache, the busy state (body[data-state]), the error and status lines.

import { $ } from "./dom.js";

export class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

const replyCache = new Map(); // GET url -> reply (small, for back/forward)
export const imageCache = new Map(); // did -> image object
let busyCount = 0;

export async function api(op, params, opts = {}) {
  const body = params instanceof URLSearchParams ? params : new URLSearchParams(params || {});
  let url = "api/" + op + (opts.method === "POST" ? "" : (body.toString() ? "?" + body : ""));
  if (!opts.method && opts.cache && replyCache.has(url)) return replyCache.get(url);
  const init = { credentials: "same-origin", headers: { Accept: "application/json" } };
  if (opts.method === "POST") {
    init.method = "POST";
    init.body = body;
    Object.assign(init.headers, opts.headers || {});
  }
  let resp;
  try {
    resp = await fetch(url, init);
  } catch (e) {
    throw new ApiError("The server could not be reached (" + e.message + ")", 0);
  }
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (!resp.ok || (data && typeof data.error === "string")) {
    const msg = data && data.error ? data.error : "HTTP " + resp.status + " " + resp.statusText;
    throw new ApiError(msg, resp.status);
  }
  if (data === null) throw new ApiError("The server sent no JSON for " + op, resp.status);
  if (opts.cache) {
    if (replyCache.size > 60) replyCache.delete(replyCache.keys().next().value);
    replyCache.set(url, data);
  }
  return data;
}

export async function fetchImage(id) {
  if (imageCache.has(id)) return imageCache.get(id);
  const reply = await api("image", { id }, { cache: true });
  imageCache.set(id, reply.image);
  return reply.image;
}

/** Runs fn with body[data-state]="loading"; "ready" when nothing is in flight any more. */
export async function busy(fn) {
  busyCount += 1;
  document.body.dataset.state = "loading";
  try {
    return await fn();
  } finally {
    busyCount -= 1;
    if (busyCount === 0) document.body.dataset.state = "ready";
  }
}

/** Whether a busy() call is in flight. */
export function isBusy() { return busyCount > 0; }

export function showError(msg) {
  const el = $("error");
  el.textContent = msg;
  el.hidden = !msg;
}

export function setStatus(msg) { $("status").textContent = msg || ""; }
