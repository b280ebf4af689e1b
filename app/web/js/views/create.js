// The create form: runtime + version, a name checked as it is typed, size, ports; the API's
// userErrors appear next to their fields.

import { idempotencyKey } from "../api.js";
import { announce, h, replace } from "../dom.js";
import { field, focusFirstError, portTargets, portsEditor, showUserErrors, sizeFields } from "../forms.js";
import { nameProblem } from "../rules.js";
import { CLASSES, groupByTitle, loadRuntimes } from "./runtimes.js";

export function renderCreate(main, app, params) {
  const body = h("div", { "aria-busy": "true" }, h("p", {}, "Loading runtimes…"));
  main.append(h("div", { class: "page-head" }, h("h1", {}, "New devbox")), body);
  loadRuntimes(app).then(
    (runtimes) => {
      body.removeAttribute("aria-busy");
      replace(body, form(app, runtimes, params.get("runtime")));
    },
    (error) => replace(body, h("p", { class: "error", role: "alert" }, `Could not load runtimes: ${error.message}`)),
  );
}

function form(app, runtimes, wanted) {
  // One key per form: pressing "Create" again after a lost answer never creates twice.
  let key = idempotencyKey();
  const groups = new Map();
  const runtimeSelect = h("select", { required: true });
  for (const [cls, heading] of CLASSES) {
    const inClass = groupByTitle(runtimes.filter((r) => r.class === cls));
    if (!inClass.length) continue;
    runtimeSelect.append(
      h(
        "optgroup",
        { label: heading },
        inClass.map((group) => {
          groups.set(group.key, group);
          const suffix = group.official ? "" : ` (${group.versions[0].namespace})`;
          return h("option", { value: group.key }, `${group.title}${suffix}`);
        }),
      ),
    );
  }
  const runtime = field({ label: "Runtime", name: "runtime", control: runtimeSelect });
  const versionSelect = h("select", { required: true });
  const version = field({ label: "Version", name: "version", control: versionSelect });
  const description = h("p", { class: "hint runtime-description" });

  const name = field({
    label: "Name",
    name: "name",
    hint: "Lowercase letters, digits and '-', starting with a letter; at most 63 characters.",
    attrs: { autocomplete: "off", spellcheck: "false", maxlength: 63, required: true, autocapitalize: "none" },
  });
  name.input.addEventListener("input", () => name.setError(nameProblem(name.input.value)));

  const sizes = sizeFields({ cpu: 2, memory: 4, storage: 20 });
  let ports = portsEditor([]);
  let portsTouched = false;
  ports.wrap.addEventListener("input", () => (portsTouched = true));
  ports.wrap.addEventListener("click", (e) => {
    if (e.target.tagName === "BUTTON") portsTouched = true;
  });
  const start = h("input", { type: "checkbox", id: "start-now", checked: true });
  const summary = h("div", { class: "error-summary", role: "alert", hidden: true });
  const submit = h("button", { type: "submit" }, "Create devbox");

  function selected() {
    return runtimes.find((r) => r.id === versionSelect.value) || null;
  }

  function fillVersions(selectId = null) {
    const group = groups.get(runtimeSelect.value);
    replace(
      versionSelect,
      (group ? group.versions : []).map((r) => h("option", { value: r.id, selected: r.id === selectId }, r.version)),
    );
    onVersion();
  }

  function onVersion() {
    const current = selected();
    description.textContent = current ? current.description : "";
    if (current && !portsTouched) {
      ports.set(current.ports.map((p) => ({ port: p.port, name: p.name, public: p.public })));
    }
  }

  runtimeSelect.addEventListener("change", () => fillVersions());
  versionSelect.addEventListener("change", onVersion);

  const initial = runtimes.find((r) => r.id === wanted);
  if (initial) {
    const group = [...groups.values()].find((g) => g.versions.includes(initial));
    runtimeSelect.value = group.key;
    fillVersions(initial.id);
  } else {
    fillVersions();
  }

  const element = h(
    "form",
    { class: "card create-form", novalidate: true },
    summary,
    h("fieldset", {}, h("legend", {}, "Runtime"), h("div", { class: "two" }, runtime.wrap, version.wrap), description),
    name.wrap,
    sizes.wrap,
    ports.wrap,
    h("div", { class: "field checkbox" }, start, h("label", { for: "start-now" }, "Start it right away")),
    h("div", { class: "form-actions" }, submit, h("a", { href: "#/devboxes", class: "button secondary" }, "Cancel")),
  );

  element.addEventListener("input", () => {
    // A changed form is a new request: a new idempotency key.
    key = idempotencyKey();
  });

  element.addEventListener("submit", async (event) => {
    event.preventDefault();
    const problems = [nameProblem(name.input.value)];
    name.setError(problems[0]);
    const sizesOk = sizes.check();
    const portsOk = ports.check();
    if (problems[0] || !sizesOk || !portsOk || !selected()) {
      if (!selected()) version.setError("Pick a runtime version.");
      focusFirstError(element);
      return;
    }
    submit.disabled = true;
    submit.textContent = "Creating…";
    const input = {
      name: name.input.value,
      runtime: selected().id,
      resources: sizes.value(),
      ports: ports.value(),
      state: start.checked ? "RUNNING" : "STOPPED",
      idempotencyKey: key,
    };
    try {
      const data = await app.request("DevboxCreate", { input });
      const payload = data.devboxCreate;
      if (payload.userErrors.length) {
        const targets = {
          name: name.setError,
          runtime: version.setError,
          "resources.cpu": sizes.fields.cpu.setError,
          "resources.memory": sizes.fields.memory.setError,
          "resources.storage": sizes.fields.storage.setError,
          ...portTargets(ports),
        };
        showUserErrors(payload.userErrors, targets, summary);
        announce(`The devbox was not created: ${payload.userErrors.map((e) => e.message).join("; ")}`, { urgent: true });
        if (!focusFirstError(element)) summary.focus();
        return;
      }
      app.devboxes.set(payload.devbox.name, payload.devbox);
      announce(`${payload.devbox.name} created.`);
      app.navigate(`#/devboxes/${encodeURIComponent(payload.devbox.name)}`);
    } catch (error) {
      showUserErrors([{ field: null, message: error.message }], {}, summary);
      summary.focus();
    } finally {
      submit.disabled = false;
      submit.textContent = "Create devbox";
    }
  });
  summary.setAttribute("tabindex", "-1");
  window.setTimeout(() => name.input.focus(), 0);
  return element;
}
