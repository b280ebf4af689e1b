// Lifecycle actions (start, stop, restart, delete with confirmation) and the dialogs they use.

import { idempotencyKey } from "../api.js";
import { announce, h } from "../dom.js";

/**
 * Run a mutation document with {input}; returns its payload. Top-level errors (network, auth)
 * and userErrors are announced; `onUserErrors` may place userErrors itself instead.
 */
export async function mutate(app, name, input, { onUserErrors = null } = {}) {
  const field = name.charAt(0).toLowerCase() + name.slice(1);
  let payload;
  try {
    const data = await app.request(name, { input: { idempotencyKey: idempotencyKey(), ...input } });
    payload = data[field];
  } catch (error) {
    announce(`${error.message}${error.requestId ? ` (request ${error.requestId})` : ""}`, { urgent: true });
    return null;
  }
  if (payload.userErrors.length) {
    if (onUserErrors) onUserErrors(payload.userErrors);
    else announce(payload.userErrors.map((e) => e.message).join("; "), { urgent: true });
  }
  return payload;
}

/**
 * A modal dialog; `build(close)` returns its body. Focus goes to the first control and back
 * to what had it when the dialog closes (Escape closes it too).
 */
export function openDialog(title, build) {
  const opener = document.activeElement;
  const titleId = `dialog-title-${Math.random().toString(36).slice(2)}`;
  const dialog = h("dialog", { "aria-labelledby": titleId });
  const close = () => dialog.close();
  dialog.append(h("h2", { id: titleId }, title), build(close));
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (opener && opener.isConnected) opener.focus();
  });
  document.body.append(dialog);
  dialog.showModal();
  const first = dialog.querySelector("input, select, textarea, button:not(.secondary)");
  if (first) first.focus();
  return dialog;
}

export function confirmDelete(app, devbox, after = () => {}) {
  openDialog(`Delete ${devbox.name}?`, (close) => {
    const abandon = h("input", { type: "checkbox", id: "abandon-changes" });
    const confirm = h("button", { type: "submit", class: "danger" }, `Delete ${devbox.name}`);
    const form = h(
      "form",
      { method: "dialog" },
      h(
        "p",
        {},
        "The devbox, its SSH key and its commit images are removed. A commit in flight finishes first. Releases already shared as runtimes stay.",
      ),
      h(
        "div",
        { class: "field checkbox" },
        abandon,
        h("label", { for: "abandon-changes" }, "Do not wait for a commit in flight (its changes are lost)"),
      ),
      h(
        "div",
        { class: "dialog-actions" },
        h("button", { type: "button", class: "secondary", onclick: close }, "Cancel"),
        confirm,
      ),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      confirm.disabled = true;
      const payload = await mutate(app, "DevboxDelete", { name: devbox.name, abandonChanges: abandon.checked });
      close();
      if (payload && payload.userErrors.length === 0) {
        announce(`Deleting ${devbox.name}…`);
        after();
      }
    });
    return form;
  });
}

/** The buttons that apply to the devbox's state and phase. */
export function lifecycleActions(app, devbox, { compact = false, onDone = () => {} } = {}) {
  const phase = devbox.phase;
  const buttons = [];
  const label = (verb) => (compact ? `${verb} ${devbox.name}` : null);
  const action = (verb, document, busy) => {
    const button = h("button", { type: "button", class: "secondary", "aria-label": label(verb) }, verb);
    button.addEventListener("click", async () => {
      button.disabled = true;
      const payload = await mutate(app, document, { name: devbox.name });
      if (payload && payload.userErrors.length === 0) {
        announce(`${busy} ${devbox.name}…`);
        onDone(payload);
      } else {
        button.disabled = false;
      }
    });
    return button;
  };
  if (phase === "DELETING") return buttons;
  if (devbox.state === "STOPPED" && phase !== "STOPPING") buttons.push(action("Start", "DevboxStart", "Starting"));
  if (devbox.state === "RUNNING") buttons.push(action("Stop", "DevboxStop", "Stopping"));
  if (devbox.state === "RUNNING" && phase === "RUNNING") buttons.push(action("Restart", "DevboxRestart", "Restarting"));
  const remove = h("button", { type: "button", class: "danger-outline", "aria-label": label("Delete") }, "Delete");
  remove.addEventListener("click", () => confirmDelete(app, devbox, () => onDone(null)));
  buttons.push(remove);
  return buttons;
}
