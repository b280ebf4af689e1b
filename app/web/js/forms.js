// Form pieces shared by the create form and the edit dialog: labelled fields with an error
// slot, the size fields, the ports editor, and the mapping of userErrors onto fields.

import { h, uniqueId } from "./dom.js";
import { LIMITS, MAX_PORTS, portProblems, sizeProblem, toQuantity } from "./rules.js";

/**
 * A labelled control with a hint and an error message wired with aria-describedby.
 * Returns {wrap, input, setError(message)}.
 */
export function field({ label, name, type = "text", value = "", hint = "", attrs = {}, control = null }) {
  const id = uniqueId(name);
  const hintId = `${id}-hint`;
  const errorId = `${id}-error`;
  const input =
    control ||
    h("input", { id, name, type, value, "aria-describedby": `${hint ? hintId : ""} ${errorId}`.trim(), ...attrs });
  if (control) {
    input.id = id;
    input.setAttribute("aria-describedby", `${hint ? hintId : ""} ${errorId}`.trim());
  }
  const error = h("p", { id: errorId, class: "field-error", "data-error-for": name });
  const wrap = h(
    "div",
    { class: "field", "data-field": name },
    h("label", { for: id }, label),
    input,
    hint ? h("p", { id: hintId, class: "hint" }, hint) : null,
    error,
  );
  const setError = (message) => {
    error.textContent = message || "";
    if (message) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  };
  return { wrap, input, setError };
}

/** CPU / memory / storage fields; values in CPUs and GiB. */
export function sizeFields(initial = {}) {
  const fields = {};
  const labels = { cpu: "CPU (cores)", memory: "Memory (GiB)", storage: "Disk (GiB)" };
  for (const resource of ["cpu", "memory", "storage"]) {
    const limit = LIMITS[resource];
    fields[resource] = field({
      label: labels[resource],
      name: resource,
      type: "number",
      value: initial[resource] ?? "",
      hint: `${limit.min} to ${limit.max} ${limit.unit}`,
      attrs: { min: limit.min, max: limit.max, step: limit.step, inputmode: "decimal", required: true },
    });
    fields[resource].input.addEventListener("input", () =>
      fields[resource].setError(sizeProblem(resource, fields[resource].input.value)),
    );
  }
  const wrap = h(
    "fieldset",
    { class: "sizes" },
    h("legend", {}, "Size"),
    fields.cpu.wrap,
    fields.memory.wrap,
    fields.storage.wrap,
  );
  return {
    wrap,
    fields,
    /** Problems shown; true when all are fine. */
    check() {
      let ok = true;
      for (const [resource, f] of Object.entries(fields)) {
        const problem = sizeProblem(resource, f.input.value);
        f.setError(problem);
        ok = ok && !problem;
      }
      return ok;
    },
    value() {
      const out = {};
      for (const [resource, f] of Object.entries(fields)) out[resource] = toQuantity(resource, f.input.value);
      return out;
    },
  };
}

/** An editable list of ports: number, name, public URL. */
export function portsEditor(initial = [], sshPort = 22) {
  const rows = [];
  const list = h("ol", { class: "port-rows" });
  const empty = h("p", { class: "hint" }, "No ports: the devbox is reachable by SSH only.");
  const addButton = h("button", { type: "button", class: "secondary" }, "Add port");
  const wrap = h("fieldset", { class: "ports" }, h("legend", {}, "Ports"), empty, list, addButton);

  function refresh() {
    empty.hidden = rows.length > 0;
    addButton.disabled = rows.length >= MAX_PORTS;
    rows.forEach((row, index) => {
      row.index = index;
      row.port.input.setAttribute("aria-label", `Port ${index + 1} number`);
      row.name.input.setAttribute("aria-label", `Port ${index + 1} name`);
      row.remove.setAttribute("aria-label", `Remove port ${index + 1}`);
    });
  }

  function add(port = { port: "", name: "", public: false }, focus = false) {
    const row = {};
    row.port = field({
      label: "Port",
      name: "port",
      type: "number",
      value: port.port,
      attrs: { min: 1, max: 65535, inputmode: "numeric" },
    });
    row.name = field({ label: "Name", name: "port-name", value: port.name || "", attrs: { placeholder: "http", maxlength: 15 } });
    row.public = h("input", { type: "checkbox", id: uniqueId("public"), checked: Boolean(port.public) });
    row.remove = h("button", { type: "button", class: "icon secondary" }, "Remove");
    row.element = h(
      "li",
      { class: "port-row" },
      row.port.wrap,
      row.name.wrap,
      h("div", { class: "field checkbox" }, row.public, h("label", { for: row.public.id }, "Public URL")),
      row.remove,
    );
    row.remove.addEventListener("click", () => {
      rows.splice(rows.indexOf(row), 1);
      row.element.remove();
      refresh();
      addButton.focus();
    });
    for (const input of [row.port.input, row.name.input]) input.addEventListener("input", () => check(false));
    rows.push(row);
    list.append(row.element);
    refresh();
    if (focus) row.port.input.focus();
  }

  function values() {
    return rows.map((row) => ({ port: row.port.input.value, name: row.name.input.value.trim() }));
  }

  function check(all = true) {
    const problems = portProblems(values(), sshPort);
    let ok = true;
    rows.forEach((row, index) => {
      const problem = problems[index];
      if (all || row.port.input.value !== "") row.port.setError(problem.port);
      if (all || row.name.input.value !== "") row.name.setError(problem.name);
      ok = ok && !problem.port && !problem.name;
    });
    return ok;
  }

  addButton.addEventListener("click", () => add(undefined, true));
  initial.forEach((port) => add(port));
  refresh();

  return {
    wrap,
    check,
    rows,
    set(ports) {
      rows.splice(0).forEach((row) => row.element.remove());
      ports.forEach((port) => add(port));
      refresh();
    },
    value() {
      return rows.map((row) => {
        const out = { port: Number(row.port.input.value), public: row.public.checked, protocol: "TCP" };
        const name = row.name.input.value.trim();
        if (name) out.name = name;
        return out;
      });
    },
  };
}

/**
 * Show userErrors next to their fields. `targets` maps a dotted field path without "input"
 * ("name", "resources.cpu", "ports.1.port") to a setError function; errors that match no
 * field go to `summary`. Returns the number of errors.
 */
export function showUserErrors(userErrors, targets, summary) {
  const unplaced = [];
  for (const error of userErrors) {
    const path = (error.field || []).filter((part, index) => !(index === 0 && part === "input")).join(".");
    const target = targets[path] || targets[path.split(".").slice(0, -1).join(".")];
    if (target) target(error.message);
    else unplaced.push(error.message);
  }
  summary.replaceChildren();
  summary.hidden = unplaced.length === 0;
  if (unplaced.length) {
    summary.append(h("p", {}, "The server refused:"), h("ul", {}, unplaced.map((m) => h("li", {}, m))));
  }
  return userErrors.length;
}

/** The targets of a ports editor for showUserErrors. */
export function portTargets(editor) {
  const targets = {};
  editor.rows.forEach((row, index) => {
    targets[`ports.${index}.port`] = row.port.setError;
    targets[`ports.${index}.name`] = row.name.setError;
    targets[`ports.${index}`] = row.port.setError;
  });
  return targets;
}

/** Put the focus on the first field with an error (keyboard and screen reader users). */
export function focusFirstError(form) {
  const invalid = form.querySelector("[aria-invalid='true']");
  if (invalid) invalid.focus();
  return invalid !== null;
}
