// Recording the user's selections (api/record) with a per-tab session id and a token
// that is renewed once when it expired.

import { $ } from "./dom.js";
import { state, app } from "./state.js";
import { api, busy } from "./api.js";

let recordToken = null;

function sessionId() {
  const key = "vosim-session";
  try {
    const have = sessionStorage.getItem(key);
    if (have && /^[A-Za-z0-9_-]{8,64}$/.test(have)) return have;
  } catch (e) { /* storage blocked: a per-load id will do */ }
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  const id = Array.from(bytes, (b) => alphabet[b % 64]).join("");
  try { sessionStorage.setItem(key, id); } catch (e) { /* see above */ }
  return id;
}

async function getToken(renew) {
  if (!recordToken || renew) {
    const reply = await api("token", {});
    recordToken = reply.token;
  }
  return recordToken;
}

async function postRecord(body) {
  const send = async (renew) => api("record", body, {
    method: "POST", headers: { "X-Vosim-Token": await getToken(renew) },
  });
  try {
    return await send(false);
  } catch (e) {
    // a token that expired (or a cookie that went) is renewed once
    if (e.status === 403 && /token|expired|cookie/i.test(e.message)) return send(true);
    throw e;
  }
}

export async function onRecord() {
  const status = $("record-status");
  if (!state.id) { status.textContent = "Choose a query image first."; return; }
  const marks = [...state.sim.map((d) => ["similar", d]), ...state.not.map((d) => ["not_similar", d])];
  if (!marks.length) { status.textContent = "Mark some images first."; return; }
  const config = app.config;
  const max = (config && config.limits && config.limits.record_max) || 100;
  status.textContent = "Recording…";
  status.classList.remove("bad");
  await busy(async () => {
    try {
      let recorded = 0;
      for (let i = 0; i < marks.length; i += max) {
        const body = new URLSearchParams({ model: String(state.model), query: state.id });
        for (const [k, d] of marks.slice(i, i + max)) body.append(k, d);
        body.append("session", sessionId());
        const reply = await postRecord(body);
        recorded += Number(reply.recorded) || 0;
      }
      status.textContent = "Recorded " + recorded + " selection" + (recorded === 1 ? "" : "s");
    } catch (e) {
      status.textContent = "Not recorded: " + e.message;
      status.classList.add("bad");
    }
  });
}
