// One devbox: live status (devboxChanged), commit progress, resources, ports, SSH, commits,
// releases, events and the audit trail; actions and their dialogs.

import { announce, h, phaseBadge, replace, time, titleCase } from "../dom.js";
import { lifecycleActions } from "./actions.js";
import { editDialog, releaseForm, shareDialog } from "./dialogs.js";
import { commitTable, ports, resources, section, sshSection, statusNotes, table } from "./sections.js";

export function renderDetail(main, app, name) {
  let devbox = null;
  let unsubscribe = null;
  let activityTimer = null;
  let gone = false;

  const heading = h("h1", {}, name);
  const phase = h("span", { id: "detail-phase", class: "phase-slot" });
  const meta = h("p", { class: "meta" });
  const toolbar = h("div", { class: "toolbar", role: "group", "aria-label": "Actions" });
  const notes = h("div", { class: "notes", "aria-live": "polite" });
  const parts = {
    resources: h("div"),
    ports: h("div"),
    ssh: h("div"),
    commits: h("div"),
    releases: h("div"),
    events: h("div"),
    audit: h("div"),
  };
  const releaseSlot = h("div");
  const body = h(
    "div",
    { class: "detail-grid", hidden: true },
    section("resources", "Resources", parts.resources),
    section("ports", "Ports", parts.ports),
    section("ssh", "SSH", parts.ssh),
    section("commits", "Commits", parts.commits),
    section("releases", "Releases", parts.releases, releaseSlot),
    section("events", "Recent events", parts.events),
    section("audit", "Audit trail", parts.audit),
  );
  const loading = h("p", { role: "status" }, "Loading…");
  main.append(
    h("p", { class: "crumbs" }, h("a", { href: "#/devboxes" }, "← All devboxes")),
    h("div", { class: "page-head" }, heading, phase),
    meta,
    toolbar,
    notes,
    loading,
    body,
  );

  function renderToolbar() {
    const focused = toolbar.contains(document.activeElement) ? document.activeElement.textContent : null;
    const edit = h("button", { type: "button", class: "secondary" }, "Edit size and ports");
    edit.addEventListener("click", () => editDialog(app, devbox));
    replace(
      toolbar,
      lifecycleActions(app, devbox, { onDone: () => scheduleActivity(300) }),
      devbox.phase === "DELETING" ? null : edit,
    );
    if (focused) {
      const again = [...toolbar.querySelectorAll("button")].find((b) => b.textContent === focused);
      (again || toolbar.querySelector("button") || heading).focus();
    }
  }

  function render(previous) {
    replace(phase, phaseBadge(devbox.phase));
    const runtime = devbox.runtime ? `${devbox.runtime.title} ${devbox.runtime.version}` : "runtime gone";
    replace(meta, `${runtime} · owner ${devbox.owner} · wants ${titleCase(devbox.state)}`);
    if (!previous || previous.phase !== devbox.phase || previous.state !== devbox.state) renderToolbar();
    replace(notes, statusNotes(devbox));
    replace(parts.resources, resources(devbox));
    replace(parts.ports, ports(devbox));
    if (!parts.ssh.contains(document.activeElement) || JSON.stringify(previous && previous.ssh) !== JSON.stringify(devbox.ssh)) {
      replace(parts.ssh, sshSection(app, devbox));
    }
    replace(parts.commits, commitTable(app, devbox));
    if (!releaseSlot.firstChild && devbox.phase !== "DELETING") releaseSlot.append(
        releaseForm(app, devbox, () => {
          releaseFollowUps = 0;
          scheduleActivity(300);
        }),
      );
    loading.remove();
    body.hidden = false;
  }

  async function loadActivity() {
    if (gone) return;
    try {
      const data = await app.request("DevboxActivity", { name });
      if (gone || !data.devbox) return;
      const releases = data.devbox.releases.edges.map((e) => e.node);
      followPendingReleases(releases);
      replace(
        parts.releases,
        table(
          "Releases",
          ["Version", "Status", "Image", "Notes", "Created", ""],
          releases.map((r) =>
            h(
              "tr",
              { "data-release": r.version },
              h("td", {}, r.version),
              h("td", {}, titleCase(r.phase), r.reason ? h("span", { class: "hint" }, ` — ${r.reason}`) : null),
              h("td", { class: "mono" }, r.image || "—"),
              h("td", {}, r.notes),
              h("td", {}, time(r.createdAt)),
              h(
                "td",
                {},
                r.phase === "SUCCEEDED"
                  ? h("button", { type: "button", class: "secondary small", "aria-label": `Share ${r.version} as a runtime`, onclick: () => shareDialog(app, devbox, r) }, "Share as runtime")
                  : null,
              ),
            ),
          ),
          "No releases yet.",
        ),
      );
      replace(
        parts.events,
        table(
          "Recent events",
          ["When", "Type", "Reason", "Message"],
          data.devbox.events.edges.map(({ node: e }) =>
            h("tr", {}, h("td", {}, time(e.lastTime || e.firstTime)), h("td", {}, e.type), h("td", {}, e.reason), h("td", {}, e.count > 1 ? `${e.message} (×${e.count})` : e.message)),
          ),
          "No recent events.",
        ),
      );
      replace(
        parts.audit,
        table(
          "Audit trail",
          ["When", "Who", "Action", "Outcome"],
          data.auditEvents.edges.map(({ node: a }) =>
            h(
              "tr",
              {},
              h("td", {}, time(a.time)),
              h("td", {}, a.actor.userName),
              h("td", {}, a.action),
              h("td", {}, a.outcome === "SUCCESS" ? "Succeeded" : `Failed${a.errorCode ? ` (${a.errorCode})` : ""}`),
            ),
          ),
          "Nothing recorded yet.",
        ),
      );
    } catch (error) {
      replace(parts.events, h("p", { class: "error" }, `Could not load the activity: ${error.message}`));
    }
  }

  // The API has no subscription for releases (they are not part of the Devbox object), so
  // after a release is asked for, its outcome is re-read a few times with a growing delay
  // while it is pending — a bounded follow-up of the user's action, not a standing poll.
  let releaseFollowUps = 0;
  function followPendingReleases(releases) {
    const pending = releases.some((r) => r.phase === "PENDING");
    if (!pending) {
      releaseFollowUps = 0;
      return;
    }
    if (releaseFollowUps >= 6) return;
    releaseFollowUps += 1;
    scheduleActivity(500 * 2 ** releaseFollowUps);
  }

  function scheduleActivity(ms = 500) {
    window.clearTimeout(activityTimer);
    activityTimer = window.setTimeout(loadActivity, ms);
  }

  function onGone() {
    gone = true;
    announce(`${name} was deleted.`);
    replace(notes, h("p", { class: "notice" }, `${name} was deleted. `, h("a", { href: "#/devboxes" }, "Back to all devboxes")));
    replace(toolbar);
    body.hidden = true;
  }

  // Subscribe first, then read: the subscription sends changes from when it starts, and the
  // read (after each subscribe frame, so also after a reconnect) gives the state before them.
  let changesWhileReading = 0;
  let reading = false;
  let readAgain = false;

  async function read() {
    if (reading) {
      readAgain = true;
      return;
    }
    reading = true;
    changesWhileReading = 0;
    try {
      const data = await app.request("Devbox", { name });
      if (gone) return;
      if (!data.devbox) {
        loading.textContent = "";
        replace(notes, h("p", { class: "error", role: "alert" }, `There is no devbox named ${name}. `, h("a", { href: "#/devboxes" }, "See all devboxes")));
        stop();
        return;
      }
      if (changesWhileReading && devbox) {
        readAgain = true; // a change arrived meanwhile: this answer may be older than it
      } else {
        const previous = devbox;
        devbox = data.devbox;
        render(previous);
        scheduleActivity(0);
      }
    } catch (error) {
      loading.textContent = `Could not load ${name}: ${error.message}`;
    } finally {
      reading = false;
      if (readAgain && !gone) {
        readAgain = false;
        read();
      }
    }
  }

  function stop() {
    if (unsubscribe) unsubscribe();
    unsubscribe = null;
  }

  // Without a WebSocket (a proxy that refuses it), still show the devbox, once.
  const fallback = window.setTimeout(() => {
    if (!devbox && !reading) read();
  }, 3000);

  unsubscribe = app.live.subscribe("DevboxChanged", { name }, {
    sent: () => read(),
    next: (change) => {
      const event = change.devboxChanged;
      changesWhileReading += 1;
      if (event.type === "DELETED") return onGone();
      const previous = devbox;
      devbox = event.devbox;
      render(previous);
      scheduleActivity();
    },
    complete: () => onGone(),
    error: (message) => {
      if (devbox) replace(notes, h("p", { class: "error", role: "alert" }, `Live updates stopped: ${message}`));
      else read();
    },
  });

  return () => {
    gone = true;
    window.clearTimeout(activityTimer);
    window.clearTimeout(fallback);
    stop();
  };
}
