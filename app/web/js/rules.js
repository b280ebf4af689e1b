// The API's input rules (app/validation.py), checked as the user types. The API checks them
// again and its userErrors are shown at the same places; these only save a round trip.

export const NAME_MAX = 63;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const PORT_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const VERSION = /^v?[0-9]+(\.[0-9]+){0,2}([-+][0-9A-Za-z.-]+)?$/;
export const MAX_PORTS = 20;

/**
 * Size limits. The API does not publish its configured limits (see the report of issue 7),
 * so these are the server's defaults (app/settings.py min_/max_cpu, memory, storage); the
 * API's OUT_OF_RANGE userErrors stay the authority when an operator configured others.
 */
export const LIMITS = {
  cpu: { min: 0.1, max: 16, step: 0.1, unit: "CPU" },
  memory: { min: 0.25, max: 64, step: 0.25, unit: "GiB" },
  storage: { min: 1, max: 500, step: 1, unit: "GiB" },
};

/** Problems with a devbox (or runtime, release) name: "" when fine. */
export function nameProblem(value, what = "name") {
  if (!value) return `${what} is required`;
  if (value.length > NAME_MAX) return `${what} must be at most ${NAME_MAX} characters`;
  if (!DNS1035_LABEL.test(value)) {
    return `${what} must consist of lowercase letters, digits and '-', start with a letter and end with a letter or digit`;
  }
  return "";
}

/** Problems with a size in the form's unit (CPUs, GiB): "" when fine. */
export function sizeProblem(resource, raw) {
  const limit = LIMITS[resource];
  if (raw === "" || raw === null || raw === undefined) return `${resource} is required`;
  const value = Number(raw);
  if (!Number.isFinite(value)) return `${resource} must be a number`;
  if (value < limit.min || value > limit.max) {
    return `${resource} must be between ${limit.min} and ${limit.max} ${limit.unit}`;
  }
  return "";
}

/** A form size as a Kubernetes quantity: cpu 1.5 → "1500m", memory 0.5 → "512Mi". */
export function toQuantity(resource, raw) {
  const value = Number(raw);
  if (resource === "cpu") {
    return Number.isInteger(value) ? String(value) : `${Math.round(value * 1000)}m`;
  }
  return Number.isInteger(value) ? `${value}Gi` : `${Math.round(value * 1024)}Mi`;
}

const SUFFIX = {
  m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

/** A Kubernetes quantity in the form's unit: "1500m" → 1.5 (cpu), "512Mi" → 0.5 (GiB). */
export function fromQuantity(resource, quantity) {
  const match = /^([0-9.]+)([a-zA-Z]*)$/.exec(quantity || "");
  if (!match) return "";
  const amount = Number(match[1]) * (SUFFIX[match[2]] || 1);
  const value = resource === "cpu" ? amount : amount / 2 ** 30;
  return String(Math.round(value * 1000) / 1000);
}

/** Problems of each port row: [{port: "", name: ""}, …] in the same order. */
export function portProblems(ports, sshPort = 22) {
  const reserved = new Set([22, sshPort]);
  const numbers = new Set();
  const names = new Set();
  return ports.map((row) => {
    const problem = { port: "", name: "" };
    const port = Number(row.port);
    if (row.port === "" || !Number.isInteger(port) || port < 1 || port > 65535) {
      problem.port = "port must be between 1 and 65535";
    } else if (reserved.has(port)) {
      problem.port = `port ${port} is reserved for SSH`;
    } else if (numbers.has(port)) {
      problem.port = `port ${port} is listed twice`;
    }
    numbers.add(port);
    const name = row.name || `port-${port}`;
    if (name.length > 15) problem.name = "port name must be at most 15 characters";
    else if (!PORT_NAME.test(name) || name.includes("--") || !/[a-z]/.test(name)) {
      problem.name =
        "port name must consist of lowercase letters, digits and single '-' between them, with at least one letter";
    } else if (names.has(name)) problem.name = `port name '${name}' is used twice`;
    names.add(name);
    return problem;
  });
}

/** Problems with a release version: "" when fine. */
export function versionProblem(value) {
  if (!value) return "version is required";
  if (value.length > 128 || !VERSION.test(value)) {
    return "version must look like v1, 1.2 or v1.2.3-rc.1";
  }
  return "";
}
