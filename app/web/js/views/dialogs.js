// The detail view's forms and dialogs: release a version, share a release as a runtime, edit
// size and ports. Each checks the API's rules as the user types and places userErrors.

import { announce, h } from "../dom.js";
import { field, focusFirstError, portTargets, portsEditor, showUserErrors, sizeFields } from "../forms.js";
import { fromQuantity, nameProblem, versionProblem } from "../rules.js";
import { mutate, openDialog } from "./actions.js";

export function releaseForm(app, devbox, onDone) {
  const version = field({ label: "Version", name: "version", hint: "e.g. v1.0.0", attrs: { autocomplete: "off", required: true } });
  const notes = field({ label: "Notes", name: "notes", control: h("textarea", { rows: 2, maxlength: 4096 }) });
  const summary = h("div", { class: "error-summary", role: "alert", hidden: true });
  const submit = h("button", { type: "submit" }, "Release");
  version.input.addEventListener("input", () => version.setError(versionProblem(version.input.value)));
  const form = h(
    "form",
    { class: "release-form", novalidate: true, "aria-labelledby": "release-form-title" },
    h("h3", { id: "release-form-title" }, "Release a version"),
    h("p", { class: "hint" }, "Tags the current image (the last commit) as an immutable version you can share as a runtime."),
    summary,
    h("div", { class: "two" }, version.wrap, notes.wrap),
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const problem = versionProblem(version.input.value);
    version.setError(problem);
    if (problem) return focusFirstError(form);
    submit.disabled = true;
    const payload = await mutate(
      app,
      "DevboxRelease",
      { name: devbox.name, version: version.input.value, notes: notes.input.value },
      { onUserErrors: (errors) => showUserErrors(errors, { version: version.setError, notes: notes.setError }, summary) },
    );
    submit.disabled = false;
    if (payload && payload.userErrors.length === 0) {
      announce(`Releasing ${devbox.name} ${version.input.value}…`);
      form.reset();
      summary.hidden = true;
      onDone();
    } else focusFirstError(form);
  });
  return form;
}

export function shareDialog(app, devbox, release) {
  openDialog(`Share ${devbox.name} ${release.version} as a runtime`, (close) => {
    const suggested = `${devbox.name}-${release.version}`.toLowerCase().replace(/[^a-z0-9-]+/g, "-").slice(0, 63).replace(/-+$/, "");
    const name = field({ label: "Runtime name", name: "name", value: suggested, attrs: { autocomplete: "off", required: true } });
    name.input.addEventListener("input", () => name.setError(nameProblem(name.input.value)));
    const title = field({ label: "Title", name: "title", value: devbox.name });
    const description = field({ label: "Description", name: "description", control: h("textarea", { rows: 2 }) });
    const visibility = field({
      label: "Who can use it",
      name: "visibility",
      control: h("select", {}, h("option", { value: "PRIVATE" }, "My namespace only"), h("option", { value: "PUBLIC" }, "Everyone")),
    });
    const summary = h("div", { class: "error-summary", role: "alert", hidden: true });
    const submit = h("button", { type: "submit" }, "Share");
    const form = h(
      "form",
      { novalidate: true },
      summary, name.wrap, title.wrap, description.wrap, visibility.wrap,
      h("div", { class: "dialog-actions" }, h("button", { type: "button", class: "secondary", onclick: close }, "Cancel"), submit),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const problem = nameProblem(name.input.value);
      name.setError(problem);
      if (problem) return focusFirstError(form);
      submit.disabled = true;
      const payload = await mutate(
        app,
        "RuntimeCreateFromRelease",
        {
          release: release.id,
          name: name.input.value,
          title: title.input.value || null,
          description: description.input.value || null,
          visibility: visibility.input.value,
        },
        {
          onUserErrors: (errors) =>
            showUserErrors(errors, { name: name.setError, title: title.setError, description: description.setError, visibility: visibility.setError }, summary),
        },
      );
      submit.disabled = false;
      if (payload && payload.userErrors.length === 0) {
        app.runtimes = null;
        close();
        announce(`Runtime ${payload.runtime.name} shared. It is in the runtime catalogue.`);
      } else focusFirstError(form);
    });
    return form;
  });
}

export function editDialog(app, devbox) {
  openDialog(`Edit ${devbox.name}`, (close) => {
    const sizes = sizeFields({
      cpu: fromQuantity("cpu", devbox.resources.cpu),
      memory: fromQuantity("memory", devbox.resources.memory),
      storage: fromQuantity("storage", devbox.resources.storage),
    });
    const editor = portsEditor(devbox.ports.map((p) => ({ port: p.port, name: p.name, public: p.public })));
    const summary = h("div", { class: "error-summary", role: "alert", hidden: true });
    const submit = h("button", { type: "submit" }, "Save");
    const form = h(
      "form",
      { novalidate: true },
      summary,
      sizes.wrap,
      editor.wrap,
      devbox.phase === "RUNNING" ? h("p", { class: "hint" }, "A running devbox applies a new size after a restart; ports change at once.") : null,
      h("div", { class: "dialog-actions" }, h("button", { type: "button", class: "secondary", onclick: close }, "Cancel"), submit),
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!sizes.check() || !editor.check()) return focusFirstError(form);
      submit.disabled = true;
      const payload = await mutate(
        app,
        "DevboxUpdate",
        { name: devbox.name, resources: sizes.value(), ports: editor.value() },
        {
          onUserErrors: (errors) =>
            showUserErrors(
              errors,
              {
                "resources.cpu": sizes.fields.cpu.setError,
                "resources.memory": sizes.fields.memory.setError,
                "resources.storage": sizes.fields.storage.setError,
                ...portTargets(editor),
              },
              summary,
            ),
        },
      );
      submit.disabled = false;
      if (payload && payload.userErrors.length === 0) {
        close();
        announce(`${devbox.name} updated.`);
      } else focusFirstError(form);
    });
    return form;
  });
}
