// Small DOM helpers shared by the views: element builder, live announcements, formatting.

/**
 * Build an element: h("button", {class: "x", onclick: fn}, "text", child).
 * Attribute values of false/null/undefined are left out; "on*" keys add listeners.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Say something to screen readers (and show it in the status bar). */
export function announce(message, { urgent = false } = {}) {
  const region = document.getElementById(urgent ? "alert" : "status");
  if (!region) return;
  region.textContent = "";
  window.clearTimeout(region.clearTimer);
  // A fresh text node makes screen readers read the same message twice in a row too.
  window.setTimeout(() => {
    region.textContent = message;
  }, 30);
  region.clearTimer = window.setTimeout(() => {
    region.textContent = "";
  }, urgent ? 12000 : 6000);
}

let uid = 0;
/** A unique element id with a readable prefix. */
export function uniqueId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

/** 1536 → "1.5 KiB". */
export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return "—";
  let value = Number(bytes);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value >= 10 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${UNITS[unit]}`;
}

/** 75.2 → "1 min 15 s". */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.round(Number(seconds) * 10) / 10;
  if (s < 60) return `${s} s`;
  const minutes = Math.floor(s / 60);
  return `${minutes} min ${Math.round(s - minutes * 60)} s`;
}

/** An ISO time as a short local date and time, inside a <time> element. */
export function time(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return h("time", { datetime: iso, title: date.toISOString() }, date.toLocaleString());
}

/** "RUNNING" → "Running". */
export function titleCase(value) {
  if (!value) return "";
  return value
    .toLowerCase()
    .split("_")
    .map((word) => word.charAt(0).toUpperCase() + word.slice(1))
    .join(" ");
}

/** A phase badge: colour plus text (never colour alone). */
export function phaseBadge(phase) {
  return h("span", { class: `badge phase-${String(phase).toLowerCase()}` }, titleCase(phase));
}

/**
 * Why the devbox's changes are not saved yet, or null: the controller's Committed=False
 * condition (CommitFailed) stays while it retries, so the reason does not flicker.
 */
export function commitFailure(devbox) {
  const condition = (devbox.conditions || []).find(
    (c) => c.type === "Committed" && c.status === "FALSE" && c.reason === "CommitFailed",
  );
  if (condition) return condition.message;
  const last = devbox.lastCommit && devbox.lastCommit.edges[0] && devbox.lastCommit.edges[0].node;
  return last && last.status === "FAILED" ? last.reason || "no reason was given" : null;
}
