// A graphql-transport-ws client: one WebSocket, many subscriptions, reconnects by itself.
//
// Protocol (https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md):
//   → connection_init {authorization}   ← connection_ack
//   → subscribe {id, query, variables}  ← next {id, payload} … ← complete | error {id}
//   ↔ ping / pong                       → complete {id} to stop one subscription
// Close code 4401 means the token was refused: the client stops and reports it. Any other
// drop (server restart, network) reconnects with exponential backoff and jitter and subscribes
// again; each subscription's sent() tells the page to re-read what it may have missed (no
// polling, no reload) — right after the subscribe frame, and twice more within seconds, since
// a change between the server's answer to that read and the start of the subscription would
// otherwise be lost.

import { loadDocument } from "./api.js";

const PING_EVERY_MS = 15000;
const PONG_WITHIN_MS = 10000;
const ACK_WITHIN_MS = 10000;
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 30000;
const RESETTLE_AFTER_MS = [1500, 6000];

export const UNAUTHORIZED = 4401;

export class LiveClient {
  /**
   * @param {string} url ws:// or wss:// URL of /graphql
   * @param {() => string|null} token the API token for connection_init
   * @param {{onStatus?: Function, onUnauthorized?: Function, onReconnected?: Function}} hooks
   */
  constructor(url, token, hooks = {}) {
    this.url = url;
    this.token = token;
    this.hooks = hooks;
    this.socket = null;
    this.subscriptions = new Map();
    this.nextId = 1;
    this.attempt = 0;
    this.everConnected = false;
    this.stopped = true;
    this.timers = new Set();
    this.acked = false;
    this.onOnline = () => {
      if (!this.stopped && !this.socket) this.connectNow();
    };
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    window.addEventListener("online", this.onOnline);
    this.connectNow();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener("online", this.onOnline);
    this.clearTimers();
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.close(1000, "bye");
    }
    this.subscriptions.clear();
    this.status("offline");
  }

  /**
   * Subscribe with a document from /static/graphql/; returns a function that ends it.
   * handlers: next(data), error(message), complete(), and sent() after each subscribe
   * frame (first connect, reconnects): the server sends changes from then on, so that is
   * when to read the current state.
   */
  subscribe(documentName, variables, handlers) {
    const id = String(this.nextId++);
    const sub = { id, documentName, variables, handlers, query: null, sent: false };
    this.subscriptions.set(id, sub);
    loadDocument(documentName).then(
      (query) => {
        sub.query = query;
        this.send_subscribe(sub);
      },
      (error) => handlers.error?.(error.message),
    );
    return () => {
      if (!this.subscriptions.delete(sub.id)) return;
      if (sub.sent && this.acked) this.send({ id: sub.id, type: "complete" });
    };
  }

  // ---------------------------------------------------------------- internals

  status(state, detail = {}) {
    this.hooks.onStatus?.(state, detail);
  }

  later(fn, ms) {
    const timer = window.setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, ms);
    this.timers.add(timer);
    return timer;
  }

  clearTimers() {
    for (const timer of this.timers) window.clearTimeout(timer);
    this.timers.clear();
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
    }
  }

  send_subscribe(sub) {
    if (!this.acked || sub.query === null || !this.subscriptions.has(sub.id)) return;
    sub.sent = true;
    this.send({
      id: sub.id,
      type: "subscribe",
      payload: { query: sub.query, variables: sub.variables || {} },
    });
    // Events are sent from now on only: the page re-reads the current state after this.
    sub.handlers.sent?.();
    // The server starts the subscription a moment after the frame arrives (the protocol
    // says nothing when it has), and the read may be answered before that: a change in
    // between would reach neither.  Reading again once the server has surely started it
    // closes that gap (a busy server may take seconds: twice).
    for (const ms of RESETTLE_AFTER_MS) {
      this.later(() => {
        if (sub.sent && this.subscriptions.has(sub.id)) sub.handlers.sent?.();
      }, ms);
    }
  }

  connectNow() {
    this.clearTimers();
    this.acked = false;
    this.status(this.everConnected ? "reconnecting" : "connecting");
    let socket;
    try {
      socket = new WebSocket(this.url, "graphql-transport-ws");
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.socket = socket;
    socket.addEventListener("open", () => {
      socket.send(
        JSON.stringify({
          type: "connection_init",
          payload: { authorization: `Bearer ${this.token()}` },
        }),
      );
      this.later(() => {
        if (this.socket === socket && !this.acked) socket.close(3000, "no connection_ack");
      }, ACK_WITHIN_MS);
    });
    socket.addEventListener("message", (event) => this.onMessage(socket, event));
    socket.addEventListener("close", (event) => this.onClose(socket, event));
    // "error" is always followed by "close"; nothing to do here (and nothing to log).
  }

  onMessage(socket, event) {
    if (socket !== this.socket) return;
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      socket.close(4400, "invalid message");
      return;
    }
    switch (message.type) {
      case "connection_ack":
        this.onAck();
        break;
      case "ping":
        this.send({ type: "pong" });
        break;
      case "pong":
        this.pongDue = null;
        break;
      case "next": {
        const sub = this.subscriptions.get(message.id);
        if (!sub) break;
        const payload = message.payload || {};
        if (payload.errors && payload.errors.length) {
          sub.lastErrors = payload.errors;
        }
        if (payload.data) sub.handlers.next?.(payload.data);
        break;
      }
      case "error": {
        const sub = this.subscriptions.get(message.id);
        if (!sub) break;
        this.subscriptions.delete(message.id);
        const errors = Array.isArray(message.payload) ? message.payload : [];
        sub.handlers.error?.(errors.map((e) => e.message).join("; ") || "subscription refused");
        break;
      }
      case "complete": {
        const sub = this.subscriptions.get(message.id);
        if (!sub) break;
        this.subscriptions.delete(message.id);
        const ended = (sub.lastErrors || []).find(
          (e) => e.extensions && e.extensions.code === "SUBSCRIPTION_ENDED",
        );
        if (ended) {
          // The server dropped a subscriber that fell behind: subscribe again and re-read.
          sub.id = String(this.nextId++);
          sub.lastErrors = null;
          this.subscriptions.set(sub.id, sub);
          this.send_subscribe(sub);
        } else if (sub.lastErrors && sub.lastErrors.length) {
          sub.handlers.error?.(sub.lastErrors.map((e) => e.message).join("; "));
        } else {
          sub.handlers.complete?.();
        }
        break;
      }
      default:
        break;
    }
  }

  onAck() {
    this.acked = true;
    this.clearTimers();
    const reconnected = this.everConnected;
    this.everConnected = true;
    this.attempt = 0;
    this.status("live");
    for (const sub of this.subscriptions.values()) {
      sub.sent = false;
      sub.lastErrors = null;
      this.send_subscribe(sub);
    }
    this.keepAlive(this.socket);
    if (reconnected) this.hooks.onReconnected?.();
  }

  keepAlive(socket) {
    this.later(() => {
      if (socket !== this.socket) return;
      this.send({ type: "ping" });
      this.pongDue = true;
      this.later(() => {
        if (socket === this.socket && this.pongDue) socket.close(3000, "no pong");
      }, PONG_WITHIN_MS);
      this.keepAlive(socket);
    }, PING_EVERY_MS);
  }

  onClose(socket, event) {
    if (socket !== this.socket) return;
    this.socket = null;
    this.acked = false;
    this.clearTimers();
    if (this.stopped) return;
    if (event.code === UNAUTHORIZED) {
      this.stopped = true;
      this.status("offline");
      this.hooks.onUnauthorized?.();
      return;
    }
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
    const delay = Math.round(base / 2 + (Math.random() * base) / 2);
    this.attempt += 1;
    this.status("reconnecting", { inSeconds: Math.ceil(delay / 1000) });
    this.later(() => this.connectNow(), delay);
  }
}
