/*
 * <herald-inbox server="https://herald.example" token="<user token>"></herald-inbox>
 *
 * Herald's in-app inbox for a host product's own pages: a bell with the unread
 * count and a dropdown list that updates live. One file, no build step, no
 * dependency. It talks to Herald with the user token only (Authorization:
 * Bearer on fetch; ?access_token= on the EventSource, which cannot send
 * headers) and never with Herald's cookies (credentials: "omit").
 *
 * Token refresh: when Herald refuses the token (expired, wrong scope...) or it
 * is about to expire, the element fires a `tokenExpired` event (bubbles,
 * composed; detail: {reason}) and shows "sign in again". The host answers by
 * setting a new token: `element.setAttribute("token", t)` or `element.token = t`.
 *
 * Styling: CSS custom properties on the element (see STYLE below), and ::part()
 * for bell, badge, panel, entry.
 */
(() => {
  "use strict";

  const EXPIRY_MARGIN_MS = 30_000; // ask the host for a new token this long before exp (or halfway, if sooner)
  const RELOAD_DEBOUNCE_MS = 150;

  const STYLE = `
    :host { --herald-font: inherit; --herald-color: #1f2328; --herald-bg: #fff; --herald-muted: #59636e;
            --herald-border: #d1d9e0; --herald-accent: #0969da; --herald-badge-bg: #cf222e; --herald-badge-color: #fff;
            --herald-unread-bg: #f6f8fa; --herald-radius: 8px; --herald-panel-width: 22rem; --herald-panel-max-height: 28rem;
            --herald-shadow: 0 8px 24px rgba(0,0,0,.15); --herald-bell-size: 1.5rem;
            position: relative; display: inline-block; font-family: var(--herald-font); color: var(--herald-color); }
    button { font: inherit; cursor: pointer; }
    .bell { position: relative; background: none; border: 0; padding: .25rem; color: inherit; line-height: 0; }
    .bell svg { width: var(--herald-bell-size); height: var(--herald-bell-size); }
    .badge { position: absolute; top: -.1rem; right: -.3rem; min-width: 1.1rem; padding: 0 .3rem; box-sizing: border-box;
             border-radius: 999px; background: var(--herald-badge-bg); color: var(--herald-badge-color);
             font-size: .7rem; line-height: 1.1rem; text-align: center; }
    .badge[hidden], [hidden] { display: none !important; }
    .panel { position: absolute; right: var(--herald-panel-right, 0); left: var(--herald-panel-left, auto); z-index: 1000; width: var(--herald-panel-width); max-height: var(--herald-panel-max-height);
             overflow: auto; background: var(--herald-bg); border: 1px solid var(--herald-border);
             border-radius: var(--herald-radius); box-shadow: var(--herald-shadow); text-align: left; }
    header, footer { display: flex; justify-content: space-between; align-items: center; gap: .5rem; padding: .5rem .75rem; }
    header { border-bottom: 1px solid var(--herald-border); font-weight: 600; }
    footer { border-top: 1px solid var(--herald-border); font-size: .85rem; }
    a { color: var(--herald-accent); }
    .link { background: none; border: 0; padding: 0; color: var(--herald-accent); font-size: .85rem; }
    ul { list-style: none; margin: 0; padding: 0; }
    li { padding: .6rem .75rem; border-bottom: 1px solid var(--herald-border); }
    li.unread { background: var(--herald-unread-bg); }
    li.unread .headline::before { content: ""; display: inline-block; width: .5rem; height: .5rem; margin-right: .4rem;
                                   border-radius: 50%; background: var(--herald-accent); vertical-align: middle; }
    .headline { margin: 0; font-weight: 600; }
    .body { margin: .2rem 0 0; }
    .when { margin: .2rem 0 0; font-size: .75rem; color: var(--herald-muted); }
    .actions { display: flex; gap: .75rem; margin-top: .3rem; }
    .note { padding: 1rem .75rem; color: var(--herald-muted); margin: 0; }
  `;

  const BELL = `<svg viewBox="0 0 24 24" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="2"
    stroke-linecap="round" stroke-linejoin="round"><path d="M18 8a6 6 0 0 0-12 0c0 7-3 9-3 9h18s-3-2-3-9"/>
    <path d="M13.73 21a2 2 0 0 1-3.46 0"/></svg>`;

  function tokenExpiry(token) {
    // Read, not verified: only to know when to ask the host for a new token. Herald verifies it.
    try {
      const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const claims = JSON.parse(atob(payload + "===".slice((payload.length + 3) % 4)));
      return typeof claims.exp === "number" ? claims.exp * 1000 : null;
    } catch (_) {
      return null;
    }
  }

  class HeraldInbox extends HTMLElement {
    static get observedAttributes() { return ["server", "token"]; }

    constructor() {
      super();
      this.attachShadow({ mode: "open" });
      this.shadowRoot.innerHTML = `<style>${STYLE}</style>
        <button class="bell" part="bell" aria-haspopup="true" aria-expanded="false" data-testid="herald-bell">${BELL}
          <span class="badge" part="badge" data-testid="herald-badge" hidden>0</span></button>
        <div class="panel" part="panel" role="region" aria-label="Notifications" data-testid="herald-panel" hidden>
          <header><span>Notifications</span>
            <button class="link" data-action="read-all" data-testid="herald-read-all">Mark all as read</button></header>
          <p class="note" data-testid="herald-signin-again" hidden>Your session has ended. Sign in again to see your notifications.</p>
          <p class="note" data-testid="herald-empty" hidden>Nothing here yet.</p>
          <p class="note" data-testid="herald-error" hidden></p>
          <ul data-testid="herald-list"></ul>
          <footer><a data-testid="herald-preferences" target="_blank" rel="noopener noreferrer">Notification preferences</a></footer>
        </div>`;
      this._bell = this.shadowRoot.querySelector(".bell");
      this._badge = this.shadowRoot.querySelector(".badge");
      this._panel = this.shadowRoot.querySelector(".panel");
      this._list = this.shadowRoot.querySelector("ul");
      this._bell.addEventListener("click", () => this.toggle());
      this.shadowRoot.addEventListener("click", (event) => this._onAction(event));
      this._state = "idle";
    }

    get token() { return this.getAttribute("token") || ""; }
    set token(value) { this.setAttribute("token", value); }
    get server() { return (this.getAttribute("server") || "").replace(/\/+$/, ""); }
    set server(value) { this.setAttribute("server", value); }
    /** "idle" | "ready" | "expired" | "error": also reflected as the element's data-state attribute. */
    get state() { return this._state; }

    connectedCallback() { this._start(); }
    disconnectedCallback() { this._stop(); }

    attributeChangedCallback(_name, before, after) {
      if (before !== after && this.isConnected) this._start();
    }

    toggle(open = this._panel.hidden) {
      this._panel.hidden = !open;
      this._bell.setAttribute("aria-expanded", String(open));
    }

    /** Reload the list from Herald (the inbox is the truth; events only say something changed). */
    async refresh() {
      const page = await this._call("GET", "/inbox/api/notifications");
      if (page) this._render(page);
    }

    _start() {
      this._stop();
      if (!this.server || !this.token) return;
      const preferences = new URL(this.server + "/inbox/preferences");
      preferences.searchParams.set("access_token", this.token);
      this.shadowRoot.querySelector("[data-testid=herald-preferences]").href = preferences.href;
      const expiry = tokenExpiry(this.token);
      if (expiry !== null) {
        // Half the time left at most, so a token shorter-lived than the margin is still used before it is replaced.
        const left = expiry - Date.now();
        const delay = left <= 0 ? 0 : left - Math.min(EXPIRY_MARGIN_MS, left / 2);
        this._expiryTimer = setTimeout(() => this._expired("expiring"), delay);
      }
      this._setState("loading");
      this.refresh().then(() => { if (this._state !== "expired") this._openStream(); });
    }

    _stop() {
      clearTimeout(this._expiryTimer);
      clearTimeout(this._reloadTimer);
      if (this._stream) this._stream.close();
      this._stream = null;
    }

    _openStream() {
      const url = new URL(this.server + "/inbox/stream");
      url.searchParams.set("access_token", this.token);
      const stream = new EventSource(url.href); // withCredentials stays false: no cookies
      const changed = () => this._scheduleReload();
      for (const type of ["notification", "read", "resync"]) stream.addEventListener(type, changed);
      stream.addEventListener("token_expired", () => this._expired("expired"));
      stream.addEventListener("open", () => this.setAttribute("data-stream", "open"));
      stream.addEventListener("error", () => {
        this.setAttribute("data-stream", "closed");
        // A refused token closes the EventSource for good; ask the API why (it answers with a reason).
        if (stream.readyState === EventSource.CLOSED && this._stream === stream) this.refresh();
      });
      this._stream = stream;
    }

    _scheduleReload() {
      clearTimeout(this._reloadTimer);
      this._reloadTimer = setTimeout(() => this.refresh(), RELOAD_DEBOUNCE_MS);
    }

    async _call(method, path, body) {
      const token = this.token;
      let response;
      try {
        response = await fetch(this.server + path, {
          method, credentials: "omit", mode: "cors",
          headers: { Authorization: `Bearer ${token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
          body: body ? JSON.stringify(body) : undefined,
        });
      } catch (_) {
        this._showError("Herald cannot be reached right now.");
        return null;
      }
      if (token !== this.token) return null; // the host changed the token meanwhile; that start reloads
      const answer = await response.json().catch(() => ({}));
      if (response.status === 401) {
        this._expired((answer.error && answer.error.reason) || "refused");
        return null;
      }
      if (!response.ok) {
        this._showError((answer.error && answer.error.message) || `Herald answered ${response.status}.`);
        return null;
      }
      return answer;
    }

    _expired(reason) {
      if (this._state === "expired") return;
      this._stop();
      this._setState("expired");
      this._list.replaceChildren();
      this._badge.hidden = true;
      this.dispatchEvent(new CustomEvent("tokenExpired", { bubbles: true, composed: true, detail: { reason } }));
    }

    _showError(message) {
      const note = this.shadowRoot.querySelector("[data-testid=herald-error]");
      note.textContent = message;
      this._setState("error");
    }

    _setState(state) {
      this._state = state;
      this.setAttribute("data-state", state);
      const shadow = this.shadowRoot;
      shadow.querySelector("[data-testid=herald-signin-again]").hidden = state !== "expired";
      shadow.querySelector("[data-testid=herald-error]").hidden = state !== "error";
      shadow.querySelector("[data-action=read-all]").hidden = state === "expired";
    }

    _render(page) {
      this._setState("ready");
      const unread = page.unread_count;
      this._badge.textContent = unread > 99 ? "99+" : String(unread);
      this._badge.hidden = unread === 0;
      this._bell.setAttribute("aria-label", `Notifications, ${unread} unread`);
      this.shadowRoot.querySelector("[data-testid=herald-empty]").hidden = page.entries.length > 0;
      this._list.replaceChildren(...page.entries.map((entry) => this._entry(entry)));
      this.dispatchEvent(new CustomEvent("heraldUpdated", { detail: { unread } }));
    }

    _entry(entry) {
      const item = document.createElement("li");
      item.setAttribute("part", "entry");
      item.className = entry.unread ? "unread" : "";
      item.dataset.testid = "herald-entry";
      const headline = document.createElement("p");
      headline.className = "headline";
      headline.dataset.testid = "herald-headline";
      if (entry.link) {
        const link = document.createElement("a");
        link.href = new URL(entry.link, this.server + "/").href;
        link.target = "_blank";
        link.rel = "noopener noreferrer";
        link.textContent = entry.headline;
        link.addEventListener("click", () => this._act("read", entry.unread_ids));
        headline.append(link);
      } else {
        headline.textContent = entry.headline;
      }
      item.append(headline);
      if (entry.body) item.append(Object.assign(document.createElement("p"), { className: "body", textContent: entry.body }));
      const when = Object.assign(document.createElement("p"), { className: "when", textContent: entry.when, title: entry.when_absolute });
      const actions = Object.assign(document.createElement("div"), { className: "actions" });
      if (entry.unread) actions.append(this._button("Mark as read", "read", entry.unread_ids));
      actions.append(this._button("Archive", "archive", entry.ids));
      item.append(when, actions);
      return item;
    }

    _button(label, action, ids) {
      const button = Object.assign(document.createElement("button"), { className: "link", textContent: label });
      button.dataset.action = action;
      button.dataset.ids = ids.join(" ");
      return button;
    }

    async _onAction(event) {
      const button = event.target.closest("button[data-action]");
      if (!button || button.dataset.action === undefined || button === this._bell) return;
      const ids = button.dataset.ids ? button.dataset.ids.split(" ") : [];
      await this._act(button.dataset.action, ids);
    }

    async _act(action, ids) {
      if (action !== "read-all" && ids.length === 0) return;
      const answer = await this._call("POST", `/inbox/api/${action}`, action === "read-all" ? undefined : { ids });
      if (answer) await this.refresh();
    }
  }

  if (!customElements.get("herald-inbox")) customElements.define("herald-inbox", HeraldInbox);
})();
