// Shared by the storefront and the dashboard: JSON calls that turn every failure into one shape.
"use strict";

// The answer of a call: {ok, status, body, error: {code, message}}; a lost connection is status 0.
async function callJson(method, url, { headers = {}, body } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (err) {
    return { ok: false, status: 0, body: null, error: { code: "network", message: "the store cannot be reached" } };
  }
  let parsed = null;
  try { parsed = await response.json(); } catch (err) { parsed = null; }
  const error = !response.ok ? (parsed && parsed.error) || { code: "http_" + response.status, message: response.statusText } : null;
  return { ok: response.ok, status: response.status, body: parsed, error };
}

// A v4 UUID; crypto.randomUUID exists only in secure contexts (https, localhost), so fall back.
function newKey() {
  if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
  const b = window.crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function say(node, kind, text) {
  node.className = "message " + kind;
  node.textContent = text;
}
