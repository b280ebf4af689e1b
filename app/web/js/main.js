// The page's shell: session (token in sessionStorage), the live devbox store fed by the
// devboxesChanged subscription, and a hash router that renders one view at a time.

import { ApiError, request } from "./api.js";
import { announce, h, replace, titleCase } from "./dom.js";
import { LiveClient } from "./live.js";
import { renderLogin } from "./views/login.js";
import { renderList } from "./views/list.js";
import { renderRuntimes } from "./views/runtimes.js";
import { renderCreate } from "./views/create.js";
import { renderDetail } from "./views/detail.js";

const TOKEN_KEY = "devbox.token";

class App {
  constructor() {
    this.main = document.getElementById("main");
    this.token = sessionStorage.getItem(TOKEN_KEY);
    this.viewer = null;
    this.devboxes = new Map();
    this.listeners = new Set();
    this.reloading = false;
    this.reloadAgain = false;
    this.changesWhileReading = 0;
    this.cleanup = null;
    this.live = null;
    this.loaded = false;
  }

  /** Run a GraphQL document; a refused token logs out. */
  async request(name, variables = {}) {
    try {
      return await request(this.token, name, variables);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401 && this.token) {
        this.logout("Your API token was refused (unknown, expired or revoked). Log in again.");
      }
      throw error;
    }
  }

  /** Check a token with the Viewer query; on success keep it for this browser tab. */
  async login(token) {
    const data = await request(token, "Viewer");
    this.token = token;
    this.viewer = data.viewer;
    this.version = data.version;
    sessionStorage.setItem(TOKEN_KEY, token);
    this.startSession();
  }

  logout(message = "") {
    sessionStorage.removeItem(TOKEN_KEY);
    this.token = null;
    this.viewer = null;
    this.devboxes.clear();
    this.loaded = false;
    if (this.live) this.live.stop();
    this.live = null;
    document.body.classList.remove("signed-in");
    this.loginMessage = message;
    if (location.hash !== "#/login") location.hash = "#/login";
    else this.route();
  }

  startSession() {
    document.body.classList.add("signed-in");
    replace(
      document.getElementById("who"),
      h("span", { class: "user" }, this.viewer.user.name),
      h("span", { class: "namespace" }, ` · ${this.viewer.namespace}`),
    );
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.live = new LiveClient(`${scheme}://${location.host}/graphql`, () => this.token, {
      onStatus: (state, detail) => this.showConnection(state, detail),
      onUnauthorized: () =>
        this.logout("Your API token was refused (unknown, expired or revoked). Log in again."),
    });
    this.live.start();
    this.live.subscribe("DevboxesChanged", {}, {
      next: (data) => this.applyChange(data.devboxesChanged),
      error: (message) => announce(`Live updates stopped: ${message}`, { urgent: true }),
      // Subscribed (again): read the list, to have what changed before (or while offline).
      sent: () => this.reloadDevboxes(),
    });
    // Without a WebSocket (a proxy that refuses it), still show the list, once.
    window.setTimeout(() => {
      if (this.token && !this.loaded && !this.reloading) this.reloadDevboxes();
    }, 3000);
    if (!location.hash || location.hash === "#/login") location.hash = "#/devboxes";
    else this.route();
  }

  showConnection(state, detail) {
    const el = document.getElementById("connection");
    el.dataset.state = state;
    el.textContent =
      state === "live"
        ? "Live"
        : state === "reconnecting"
          ? detail.inSeconds
            ? `Reconnecting in ${detail.inSeconds} s…`
            : "Reconnecting…"
          : state === "connecting"
            ? "Connecting…"
            : "Offline";
  }

  /** Read every devbox (first load, and after a reconnect to catch what was missed). */
  async reloadDevboxes() {
    if (this.reloading) {
      this.reloadAgain = true;
      return;
    }
    this.reloading = true;
    this.changesWhileReading = 0;
    try {
      const found = new Map();
      let after = null;
      do {
        const data = await this.request("Devboxes", { after });
        for (const edge of data.devboxes.edges) found.set(edge.node.name, edge.node);
        after = data.devboxes.pageInfo.hasNextPage ? data.devboxes.pageInfo.endCursor : null;
      } while (after);
      this.rereads = this.changesWhileReading === 0 ? 0 : (this.rereads || 0) + 1;
      if (this.changesWhileReading === 0 || this.rereads > 3) {
        this.devboxes = found;
        this.loaded = true;
        this.emit({ type: "RELOADED" });
      } else {
        // A change arrived while reading: the answer may be older than it. Read again.
        this.reloadAgain = true;
      }
    } catch (error) {
      this.loadError = error.message;
      this.emit({ type: "ERROR", message: error.message });
    } finally {
      this.reloading = false;
      if (this.reloadAgain && this.token) {
        this.reloadAgain = false;
        this.reloadDevboxes();
      }
    }
  }

  applyChange(change) {
    this.changesWhileReading += 1;
    const devbox = change.devbox;
    const before = this.devboxes.get(devbox.name);
    if (change.type === "DELETED") {
      this.devboxes.delete(devbox.name);
      announce(`${devbox.name} was deleted.`);
    } else {
      this.devboxes.set(devbox.name, devbox);
      if (!before) announce(`${devbox.name} was created: ${titleCase(devbox.phase)}.`);
      else if (before.phase !== devbox.phase) announce(`${devbox.name} is now ${titleCase(devbox.phase)}.`);
    }
    this.emit({ type: change.type, devbox, before, changed: change.changed });
  }

  onChange(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(event) {
    for (const listener of [...this.listeners]) listener(event);
  }

  navigate(hash) {
    location.hash = hash;
  }

  route() {
    document.getElementById("alert").textContent = "";
    if (this.cleanup) this.cleanup();
    this.cleanup = null;
    const [path, query = ""] = location.hash.replace(/^#/, "").split("?");
    const params = new URLSearchParams(query);
    const parts = path.split("/").filter(Boolean);
    for (const link of document.querySelectorAll("nav a")) {
      const current = link.getAttribute("href") === `#/${parts[0] || "devboxes"}`;
      if (current) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    this.main.replaceChildren();
    if (!this.token || !this.viewer) {
      this.cleanup = renderLogin(this.main, this);
      return;
    }
    let cleanup;
    if (parts[0] === "runtimes") cleanup = renderRuntimes(this.main, this);
    else if (parts[0] === "new") cleanup = renderCreate(this.main, this, params);
    else if (parts[0] === "devboxes" && parts[1]) cleanup = renderDetail(this.main, this, decodeURIComponent(parts[1]));
    else cleanup = renderList(this.main, this);
    this.cleanup = cleanup || null;
    const heading = this.main.querySelector("h1");
    document.title = heading ? `${heading.textContent} · Devbox` : "Devbox";
    if (heading && this.routed) {
      heading.setAttribute("tabindex", "-1");
      heading.focus();
    }
    this.routed = true;
  }

  async boot() {
    window.addEventListener("hashchange", () => this.route());
    document.getElementById("logout").addEventListener("click", () => this.logout("You are logged out."));
    if (this.token) {
      try {
        await this.login(this.token);
        return;
      } catch (error) {
        sessionStorage.removeItem(TOKEN_KEY);
        this.token = null;
        this.loginMessage =
          error instanceof ApiError && error.status === 401
            ? "Your API token was refused (unknown, expired or revoked). Log in again."
            : error.message;
      }
    }
    this.route();
  }
}

const app = new App();
app.boot();
