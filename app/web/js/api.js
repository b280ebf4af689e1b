// GraphQL over HTTP: loads the page's documents from /static/graphql/ and runs them.
//
// Documents may spread fragments defined in fragments.graphql; the ones a document uses
// (transitively) are appended before it is sent, exactly as tests/web/test_documents.py does
// when it validates the documents against the schema.

const BASE = new URL("../graphql/", import.meta.url);
const cache = new Map();
let fragments = null;

/** An error the API answered at the top level (auth, rate limit, bad request, bug). */
export class ApiError extends Error {
  constructor(message, { status = 0, code = "ERROR", requestId = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }
}

async function fetchText(name) {
  const response = await fetch(new URL(name, BASE), { cache: "no-cache" });
  if (!response.ok) throw new ApiError(`The page could not load ${name}.`, { status: response.status });
  return response.text();
}

function splitFragments(text) {
  const found = new Map();
  const parts = text.split(/^(?=fragment\s)/m);
  for (const part of parts) {
    const match = /^fragment\s+(\w+)/.exec(part);
    if (match) found.set(match[1], part.trim());
  }
  return found;
}

function spreads(text) {
  return [...text.matchAll(/\.\.\.\s*([A-Za-z_]\w*)/g)]
    .map((m) => m[1])
    .filter((name) => name !== "on");
}

/** The document `name` (without .graphql) with the fragments it needs. */
export async function loadDocument(name) {
  if (cache.has(name)) return cache.get(name);
  const promise = (async () => {
    if (fragments === null) fragments = splitFragments(await fetchText("fragments.graphql"));
    const text = await fetchText(`${name}.graphql`);
    const needed = new Set();
    const queue = spreads(text);
    while (queue.length) {
      const fragment = queue.pop();
      if (needed.has(fragment) || !fragments.has(fragment)) continue;
      needed.add(fragment);
      queue.push(...spreads(fragments.get(fragment)));
    }
    return [text, ...[...needed].map((f) => fragments.get(f))].join("\n");
  })();
  cache.set(name, promise);
  promise.catch(() => cache.delete(name));
  return promise;
}

/** Run a document over HTTP with the token; its `data`. Throws ApiError. */
export async function request(token, name, variables = {}) {
  const query = await loadDocument(name);
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        Authorization: `Bearer ${token}`,
      },
      body: JSON.stringify({ query, variables }),
    });
  } catch (error) {
    throw new ApiError("The server cannot be reached. Check your connection and try again.", {
      code: "NETWORK",
    });
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const first = body && Array.isArray(body.errors) ? body.errors[0] : null;
  if (!response.ok || first) {
    const extensions = (first && first.extensions) || {};
    let message = first ? first.message : `The server answered ${response.status}.`;
    if (response.status === 429) {
      message = `Too many requests: wait ${response.headers.get("Retry-After") || "a few"} seconds and try again.`;
    }
    throw new ApiError(message, {
      status: response.status,
      code: extensions.code || (response.status === 401 ? "UNAUTHENTICATED" : "ERROR"),
      requestId: extensions.requestId || response.headers.get("X-Request-Id"),
    });
  }
  return body.data;
}

/** A random idempotency key, so that a retried click never acts twice. */
export function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
