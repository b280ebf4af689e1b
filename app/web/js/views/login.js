// Log in with an API token (checked with the Viewer query; kept in sessionStorage only).

import { ApiError } from "../api.js";
import { h } from "../dom.js";
import { field } from "../forms.js";

export function renderLogin(main, app) {
  const token = field({
    label: "API token",
    name: "token",
    type: "password",
    hint: "The first “devboxctl serve” prints one; “devboxctl admin token create USER” makes more. It is kept in this browser tab only.",
    attrs: { autocomplete: "current-password", required: true, spellcheck: "false" },
  });
  const submit = h("button", { type: "submit" }, "Log in");
  const message = h("p", { class: "notice", role: "status" }, app.loginMessage || "");
  message.hidden = !app.loginMessage;
  app.loginMessage = "";
  const form = h(
    "form",
    { class: "card login", novalidate: true, "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Log in to Devbox"),
    message,
    token.wrap,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = token.input.value.trim();
    if (!value) {
      token.setError("Enter your API token.");
      token.input.focus();
      return;
    }
    token.setError("");
    submit.disabled = true;
    submit.textContent = "Checking…";
    try {
      await app.login(value);
    } catch (error) {
      const refused = error instanceof ApiError && error.status === 401;
      token.setError(refused ? "This token was refused: it is unknown, expired or revoked." : error.message);
      token.input.focus();
    } finally {
      submit.disabled = false;
      submit.textContent = "Log in";
    }
  });
  main.append(h("div", { class: "login-page" }, form));
  token.input.focus();
}
