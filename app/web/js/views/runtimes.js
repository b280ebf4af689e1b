// The runtime catalogue: grouped by class (OS, language, framework), each title with its
// versions; official, public and this namespace's shared runtimes alike.

import { h, replace } from "../dom.js";

export const CLASSES = [
  ["OS", "Operating systems"],
  ["LANGUAGE", "Languages"],
  ["FRAMEWORK", "Frameworks"],
];

/** Every runtime the viewer can see (all pages). */
export async function loadRuntimes(app, { fresh = false } = {}) {
  if (app.runtimes && !fresh) return app.runtimes;
  const found = [];
  let after = null;
  do {
    const data = await app.request("Runtimes", { after });
    found.push(...data.runtimes.edges.map((e) => e.node));
    after = data.runtimes.pageInfo.hasNextPage ? data.runtimes.pageInfo.endCursor : null;
  } while (after);
  app.runtimes = found;
  return found;
}

/** Runtimes of one class grouped by title (and owner namespace), versions newest first. */
export function groupByTitle(runtimes) {
  const groups = new Map();
  for (const runtime of runtimes) {
    const key = `${runtime.official ? "" : runtime.namespace}/${runtime.title}`;
    if (!groups.has(key)) groups.set(key, { key, title: runtime.title, official: runtime.official, versions: [] });
    groups.get(key).versions.push(runtime);
  }
  const collator = new Intl.Collator(undefined, { numeric: true });
  for (const group of groups.values()) group.versions.sort((a, b) => collator.compare(b.version, a.version));
  return [...groups.values()].sort((a, b) => Number(b.official) - Number(a.official) || a.title.localeCompare(b.title));
}

function source(runtime) {
  if (runtime.official) return "Official";
  const from = runtime.sharedFrom;
  const where = from ? `Shared from ${from.namespace}/${from.devbox} ${from.release}` : `From ${runtime.namespace}`;
  return `${where} · ${runtime.visibility === "PUBLIC" ? "public" : "private"}`;
}

export function renderRuntimes(main, app) {
  const body = h("div", { "aria-busy": "true" }, h("p", {}, "Loading runtimes…"));
  main.append(h("div", { class: "page-head" }, h("h1", {}, "Runtimes")), body);
  loadRuntimes(app, { fresh: true }).then(
    (runtimes) => {
      body.removeAttribute("aria-busy");
      const sections = CLASSES.map(([cls, heading]) => {
        const groups = groupByTitle(runtimes.filter((r) => r.class === cls));
        const id = `class-${cls.toLowerCase()}`;
        return h(
          "section",
          { class: "runtime-class", "aria-labelledby": id },
          h("h2", { id }, heading),
          groups.length === 0
            ? h("p", { class: "hint" }, "None yet.")
            : h(
                "ul",
                { class: "runtime-grid" },
                groups.map((group) =>
                  h(
                    "li",
                    { class: "card runtime-card", "data-runtime": group.title },
                    h("h3", {}, group.title),
                    h("p", { class: "meta" }, source(group.versions[0])),
                    h("p", {}, group.versions[0].description),
                    h(
                      "ul",
                      { class: "versions", "aria-label": `${group.title} versions` },
                      group.versions.map((runtime) =>
                        h(
                          "li",
                          {},
                          h(
                            "a",
                            {
                              class: "button secondary",
                              href: `#/new?runtime=${encodeURIComponent(runtime.id)}`,
                              "aria-label": `Create a devbox from ${group.title} ${runtime.version}`,
                            },
                            runtime.version,
                          ),
                        ),
                      ),
                    ),
                  ),
                ),
              ),
        );
      });
      replace(body, sections);
    },
    (error) => replace(body, h("p", { class: "error", role: "alert" }, `Could not load runtimes: ${error.message}`)),
  );
}
