// The parts of the detail view that show a devbox's state: status notes (commit progress,
// failures), resources, ports, SSH access with copy buttons, commit history, tables.

import { announce, commitFailure, formatBytes, formatDuration, h, replace, time, titleCase } from "../dom.js";
import { mutate } from "./actions.js";

const ACTIVE_COMMIT = new Set(["PENDING", "COMMITTING"]);

export function section(id, title, ...children) {
  return h("section", { class: "card", id, "aria-labelledby": `${id}-title` }, h("h2", { id: `${id}-title` }, title), ...children);
}

export function table(caption, headers, rows, empty) {
  if (!rows.length) return h("p", { class: "hint" }, empty);
  return h(
    "div",
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption },
    h(
      "table",
      {},
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows),
    ),
  );
}

function commits(devbox) {
  return devbox.commits ? devbox.commits.edges.map((e) => e.node) : [];
}

/** Copy text; falls back to a hidden textarea where the Clipboard API is not offered. */
async function copy(text, what) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
    } else {
      const area = h("textarea", { class: "visually-hidden", readonly: true });
      area.value = text;
      document.body.append(area);
      area.select();
      const ok = document.execCommand("copy");
      area.remove();
      if (!ok) throw new Error("copy refused");
    }
    announce(`Copied ${what}.`);
    return true;
  } catch {
    announce(`Could not copy ${what}: select it and copy it by hand.`, { urgent: true });
    return false;
  }
}

function copyButton(text, what, label) {
  const button = h("button", { type: "button", class: "secondary copy", "data-copy": what }, label);
  button.addEventListener("click", async () => {
    if (await copy(text, what)) {
      button.textContent = "Copied ✓";
      window.setTimeout(() => (button.textContent = label), 2000);
    }
  });
  return button;
}

export function statusNotes(devbox) {
  const latest = commits(devbox)[0];
  const notes = [];
  const failure = devbox.phase === "STOPPED" ? null : commitFailure(devbox);
  if (failure) {
    const kept =
      devbox.state === "STOPPED"
        ? "The devbox keeps running with all its files until a commit succeeds; the commit is retried."
        : "The devbox keeps running with all its files.";
    notes.push(
      h(
        "div",
        { class: "notice warning", "data-note": "commit-failed" },
        h("p", {}, h("strong", {}, "A commit failed: "), failure),
        h("p", {}, `Nothing was lost. ${kept}`),
      ),
    );
  }
  if (devbox.phase === "STOPPING" || (latest && ACTIVE_COMMIT.has(latest.status))) {
    const step =
      latest && latest.status === "COMMITTING"
        ? "committing the container to an image and pushing it"
        : failure
          ? "waiting to retry the commit"
          : "waiting to commit";
    notes.push(
      h(
        "div",
        { class: "notice progress", "data-note": "committing" },
        h("p", {}, h("strong", {}, "Saving your changes: "), `${step}.`),
        h("progress", { "aria-label": "Commit progress" }),
        latest && latest.startedAt ? h("p", { class: "hint" }, "Started ", time(latest.startedAt)) : null,
      ),
    );
  }
  if (latest && latest.status === "SUCCEEDED" && devbox.phase === "STOPPED") {
    notes.push(
      h(
        "div",
        { class: "notice success", "data-note": "committed" },
        h("p", {}, `Stopped. Your changes are saved in commit ${latest.id} (${formatBytes(latest.sizeBytes)}, ${formatDuration(latest.durationSeconds)}).`),
      ),
    );
  }
  const problems = devbox.conditions.filter(
    (c) => c.status !== "TRUE" && c.message && !(failure && c.type === "Committed"),
  );
  if (devbox.phase === "FAILED" || problems.length) {
    notes.push(
      h(
        "details",
        { class: "conditions", open: devbox.phase === "FAILED" },
        h("summary", {}, devbox.phase === "FAILED" ? "Why it failed" : "Status details"),
        h("ul", {}, problems.map((c) => h("li", {}, h("strong", {}, `${c.type}: ${c.reason}. `), c.message))),
      ),
    );
  }
  return notes;
}

export function resources(devbox) {
  const r = devbox.resources;
  return h(
    "dl",
    { class: "facts" },
    h("dt", {}, "CPU"), h("dd", { "data-fact": "cpu" }, r.cpu),
    h("dt", {}, "Memory"), h("dd", { "data-fact": "memory" }, r.memory),
    h("dt", {}, "Disk"), h("dd", { "data-fact": "storage" }, r.storage),
    h("dt", {}, "Runtime"), h("dd", {}, devbox.runtime ? `${devbox.runtime.title} ${devbox.runtime.version}` : "gone"),
    h("dt", {}, "Image"), h("dd", { class: "mono" }, devbox.image || "—"),
    h("dt", {}, "Network"), h("dd", {}, titleCase(devbox.networkMode)),
    h("dt", {}, "Owner"), h("dd", {}, devbox.owner),
    h("dt", {}, "Created"), h("dd", {}, time(devbox.createdAt)),
  );
}

export function ports(devbox) {
  return table(
    "Ports",
    ["Name", "Port", "Protocol", "Public URL"],
    devbox.ports.map((p) =>
      h(
        "tr",
        {},
        h("td", {}, p.name),
        h("td", {}, String(p.port)),
        h("td", {}, p.protocol),
        h("td", {}, p.url ? h("a", { href: p.url, target: "_blank", rel: "noopener" }, p.url) : p.public ? "waiting for its URL…" : "private"),
      ),
    ),
    "No ports: reach the devbox with SSH.",
  );
}

function sshCommand(ssh) {
  return `ssh -i ~/.ssh/${ssh.hostAlias} -p ${ssh.port} ${ssh.user || "root"}@${ssh.host}`;
}

export function sshSection(app, devbox) {
  const ssh = devbox.ssh;
  if (devbox.networkMode === "TUNNEL" && (!ssh || !ssh.host)) {
    // No node port: SSH goes through the API server's WebSocket tunnel, with devboxctl.
    const command = `devboxctl ssh ${devbox.name}`;
    return [
      h("p", {}, "This devbox is reached through the API server's tunnel (no node port)."),
      h("p", { class: "label" }, "Command"),
      h("div", { class: "copy-row" }, h("code", { class: "mono", id: "ssh-command" }, command), copyButton(command, "the SSH command", "Copy command")),
      h("p", { class: "hint" }, "devboxctl ssh-config writes the matching ~/.ssh config entry and key (ProxyCommand devboxctl ssh-proxy)."),
    ];
  }
  if (!ssh || !ssh.host || !ssh.port) {
    return [h("p", { class: "hint" }, "SSH access appears here once the devbox runs.")];
  }
  const command = sshCommand(ssh);
  const owner = app.viewer.user.name === devbox.owner;
  const download = h("button", { type: "button", class: "secondary" }, "Download key");
  download.addEventListener("click", async () => {
    download.disabled = true;
    try {
      const data = await app.request("DevboxPrivateKey", { name: devbox.name });
      const key = data.devbox && data.devbox.ssh && data.devbox.ssh.privateKey;
      if (!key) {
        announce("The key is not available (yet).", { urgent: true });
        return;
      }
      const url = URL.createObjectURL(new Blob([key], { type: "application/x-pem-file" }));
      const link = h("a", { href: url, download: ssh.hostAlias, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      window.setTimeout(() => URL.revokeObjectURL(url), 1000);
      announce(`Key saved as ${ssh.hostAlias}: move it to ~/.ssh/ and chmod 600 it.`);
    } catch (error) {
      announce(`Could not get the key: ${error.message}`, { urgent: true });
    } finally {
      download.disabled = false;
    }
  });
  return [
    h("p", { class: "label" }, "Command"),
    h("div", { class: "copy-row" }, h("code", { class: "mono", id: "ssh-command" }, command), copyButton(command, "the SSH command", "Copy command")),
    h("p", { class: "label" }, "~/.ssh/config entry"),
    h("pre", { class: "mono", id: "ssh-config", tabindex: "0" }, ssh.configSnippet || ""),
    h(
      "div",
      { class: "button-row" },
      copyButton(ssh.configSnippet || "", "the SSH config entry", "Copy config"),
      owner ? download : null,
      ssh.vscodeUri ? h("a", { class: "button secondary", href: ssh.vscodeUri }, "Open in VS Code") : null,
      ssh.jetbrainsUri ? h("a", { class: "button secondary", href: ssh.jetbrainsUri }, "Open in JetBrains Gateway") : null,
    ),
    owner
      ? h("p", { class: "hint" }, `Save the key as ~/.ssh/${ssh.hostAlias} (chmod 600); the config entry and IDE links use it.`)
      : h("p", { class: "hint" }, "Only the owner can download the key."),
    ssh.hostKeyFingerprint ? h("p", { class: "hint" }, "Host key: ", h("code", {}, ssh.hostKeyFingerprint)) : null,
  ];
}

export function commitTable(app, devbox) {
  const canRestore = devbox.state === "STOPPED" && devbox.phase === "STOPPED";
  return table(
    "Commit history",
    ["Status", "Mode", "Started", "Duration", "Size", "Layers", "Reason", ""],
    commits(devbox).map((c) =>
      h(
        "tr",
        { "data-commit": c.id, "data-status": c.status },
        h("td", {}, h("span", { class: `badge commit-${c.status.toLowerCase()}` }, titleCase(c.status))),
        h("td", {}, titleCase(c.mode)),
        h("td", {}, time(c.startedAt)),
        h("td", {}, formatDuration(c.durationSeconds)),
        h("td", {}, formatBytes(c.sizeBytes)),
        h("td", {}, c.layers ?? "—"),
        h("td", { class: "reason" }, c.reason || (c.restoredFrom ? `restored ${c.restoredFrom}` : "")),
        h(
          "td",
          {},
          canRestore && c.status === "SUCCEEDED"
            ? h(
                "button",
                {
                  type: "button",
                  class: "secondary small",
                  "aria-label": `Restore commit ${c.id}`,
                  onclick: () => mutate(app, "DevboxRestore", { name: devbox.name, commitId: c.id, start: true }),
                },
                "Restore",
              )
            : null,
        ),
      ),
    ),
    "No commits yet: the first one is made when the devbox stops.",
  );
}
