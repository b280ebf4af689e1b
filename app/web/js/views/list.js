// Every devbox of the namespace with its live phase (the store is fed by devboxesChanged).

import { commitFailure, h, phaseBadge, replace } from "../dom.js";
import { lifecycleActions } from "./actions.js";

function commitNote(devbox) {
  const failure = devbox.phase === "STOPPED" ? null : commitFailure(devbox);
  if (failure) {
    return h("p", { class: "warning-note" }, `Commit failed: ${failure} — nothing was lost.`);
  }
  if (devbox.phase === "STOPPING") {
    return h("p", { class: "progress-note" }, h("span", { class: "spinner", "aria-hidden": "true" }), " Saving changes…");
  }
  return null;
}

function row(app, devbox) {
  const link = h("a", { href: `#/devboxes/${encodeURIComponent(devbox.name)}`, class: "devbox-name" }, devbox.name);
  const runtime = devbox.runtime ? `${devbox.runtime.title} ${devbox.runtime.version}` : "runtime gone";
  return h(
    "li",
    { class: "devbox-card", "data-devbox": devbox.name, "data-phase": devbox.phase },
    h("div", { class: "devbox-head" }, h("h2", {}, link), phaseBadge(devbox.phase)),
    h(
      "p",
      { class: "meta" },
      `${runtime} · ${devbox.resources.cpu} CPU · ${devbox.resources.memory} memory · ${devbox.resources.storage} disk`,
    ),
    commitNote(devbox),
    h("div", { class: "row-actions" }, lifecycleActions(app, devbox, { compact: true })),
  );
}

export function renderList(main, app) {
  const search = h("input", { id: "devbox-search", type: "search", placeholder: "Filter by name", autocomplete: "off" });
  const list = h("ul", { class: "devbox-list", "aria-label": "Devboxes" });
  const summary = h("p", { class: "hint", id: "devbox-count" });
  main.append(
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Devboxes"),
      h("a", { class: "button", href: "#/new" }, "New devbox"),
    ),
    h("div", { class: "field inline" }, h("label", { for: "devbox-search" }, "Filter"), search),
    summary,
    list,
  );

  function render() {
    if (!app.loaded) {
      replace(list, h("li", { class: "empty" }, app.loadError ? `Could not load devboxes: ${app.loadError}` : "Loading…"));
      summary.textContent = "";
      return;
    }
    const text = search.value.trim().toLowerCase();
    const all = [...app.devboxes.values()].sort((a, b) => a.name.localeCompare(b.name));
    const shown = all.filter((d) => d.name.includes(text));
    summary.textContent = `${shown.length} of ${all.length} devboxes`;
    if (all.length === 0) {
      replace(list, h("li", { class: "empty" }, "No devboxes yet. ", h("a", { href: "#/new" }, "Create your first one"), "."));
      return;
    }
    // Replace only the rows that changed, so focus stays where it is.
    const existing = new Map([...list.querySelectorAll(":scope > li[data-devbox]")].map((li) => [li.dataset.devbox, li]));
    list.querySelectorAll(":scope > li.empty").forEach((li) => li.remove());
    let previous = null;
    for (const devbox of shown) {
      let li = existing.get(devbox.name);
      existing.delete(devbox.name);
      if (!li || li.dataset.version !== JSON.stringify(devbox)) {
        const fresh = row(app, devbox);
        fresh.dataset.version = JSON.stringify(devbox);
        const focused = li && li.contains(document.activeElement) ? document.activeElement.textContent : null;
        if (li) li.replaceWith(fresh);
        li = fresh;
        if (focused) {
          const again = [...li.querySelectorAll("a, button")].find((el) => el.textContent === focused && !el.disabled);
          (again || li.querySelector("a")).focus();
        }
      }
      if (previous === null ? list.firstElementChild !== li : previous.nextElementSibling !== li) {
        if (previous === null) list.prepend(li);
        else previous.after(li);
      }
      previous = li;
    }
    for (const li of existing.values()) li.remove();
  }

  search.addEventListener("input", render);
  const off = app.onChange(render);
  render();
  return off;
}

