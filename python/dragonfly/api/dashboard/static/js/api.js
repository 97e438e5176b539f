// The documented API, called relative to this page (a public URL with a path prefix works as is).
//
// Management calls (`api/…`, `v1/pool/…`, `v1/market/…`) ride on the session cookie, which no script can
// read; state-changing ones echo the session's CSRF token (the `df_csrf` cookie) in `x-csrf-token`.
// Inference calls (`v1/chat/completions`, `v1/models`, `v1/generation`) send a buyer key as a bearer
// token and no cookie.

const CSRF_COOKIE = "df_csrf";
const SAFE = new Set(["GET", "HEAD"]);

export class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code || null;
  }
}

function csrfToken() {
  for (const part of document.cookie.split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === CSRF_COOKIE) return rest.join("=");
  }
  return "";
}

/** What the server answered with, in words: its error message, else the status in plain language. */
export async function failure(response) {
  let message = null;
  let code = null;
  try {
    const body = await response.json();
    if (body && body.error) {
      message = body.error.message || null;
      code = body.error.code || null;
    }
  } catch (err) { /* not JSON: say what the status means */ }
  if (!message) {
    message = {
      401: "You are not logged in, or your session has ended.",
      403: "This is not allowed.",
      404: "Not found.",
      413: "The request is too large.",
      429: "Too many requests: wait a moment and try again.",
      502: "The seller's answer failed.",
      503: "The service is unavailable for a moment: try again.",
    }[response.status] || "The server answered with HTTP " + response.status + ".";
  }
  return new ApiError(message, response.status, code);
}

// Set by the app: called when a cookie-authenticated call finds the session gone.
let onSessionEnded = () => {};
export function whenSessionEnds(callback) { onSessionEnded = callback; }

async function send(url, init) {
  try {
    return await fetch(url, init);
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError("The server could not be reached. Check your connection and try again.", 0, "network");
  }
}

/** A management call with the session cookie: parsed JSON, or null for 204. `extra`: more request
 * headers (an `Idempotency-Key`). */
export async function api(method, path, body, extra) {
  const headers = { accept: "application/json", ...extra };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (!SAFE.has(method)) headers["x-csrf-token"] = csrfToken();
  const response = await send(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    cache: "no-store",
  });
  if (!response.ok) {
    const err = await failure(response);
    if (response.status === 401 && !path.startsWith("api/auth/session")) onSessionEnded(err);
    throw err;
  }
  return response.status === 204 ? null : response.json();
}

/** An inference call with a buyer key (held in memory only); the raw Response, checked for errors. */
export async function withKey(key, method, path, body, signal) {
  const headers = { accept: body && body.stream ? "text/event-stream" : "application/json", authorization: "Bearer " + key };
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await send(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
    signal,
  });
  if (!response.ok) {
    const err = await failure(response);
    err.requestId = response.headers.get("x-request-id"); // failed requests have a receipt too
    throw err;
  }
  return response;
}

/** `?a=1&b=2` from an object, leaving out empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? "?" + text : "";
}
