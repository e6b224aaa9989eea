/* Herald inbox: live updates over SSE and the browser-push opt-in.
   The page works without this file; it only makes it live. */
(function () {
  "use strict";

  function inboxChanged() {
    // The list and the badge listen for this (hx-trigger="inbox:changed from:body") and reload from the server.
    document.body.dispatchEvent(new CustomEvent("inbox:changed"));
  }

  function startStream(root) {
    if (!window.EventSource) return;
    var url = root.getAttribute("data-inbox-stream");
    var lastId = root.getAttribute("data-last-event-id") || null;
    var source = null;
    var opened = false;

    function connect() {
      // The browser itself sends Last-Event-ID when it reconnects; the query string covers a fresh EventSource.
      root.setAttribute("data-stream", "connecting");
      source = new EventSource(url + (lastId ? "?last_event_id=" + encodeURIComponent(lastId) : ""));
      source.addEventListener("open", function () {
        root.setAttribute("data-stream", "open");
        // Anything that changed while we were not listening (reads included) shows now.
        if (opened || !lastId) inboxChanged();
        opened = true;
      });
      source.addEventListener("error", function () {
        root.setAttribute("data-stream", "reconnecting");
      });
      ["notification", "read", "resync"].forEach(function (type) {
        source.addEventListener(type, function (event) {
          if (event.lastEventId) lastId = event.lastEventId;
          inboxChanged();
        });
      });
    }

    connect();
    window.heraldInbox = {
      reconnect: function () { source.close(); opened = true; connect(); },
      state: function () { return root.getAttribute("data-stream"); }
    };
  }

  function base64UrlToBytes(text) {
    var padded = (text + "===".slice((text.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/");
    var raw = atob(padded);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes;
  }

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function sendJson(method, url, body) {
    return fetch(url, {
      method: method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(body)
    }).then(function (response) {
      if (response.ok) return response;
      return response.json().catch(function () { return {}; }).then(function (answer) {
        throw new Error(answer.error || "the server answered " + response.status);
      });
    });
  }

  var BLOCKED = "Notifications are blocked for this site. To turn them on, allow notifications for this site in your browser's settings, then try again.";
  var DISMISSED = "You did not allow notifications. Press the button again to be asked again.";
  var UNSUPPORTED = "This browser cannot show notifications from websites.";

  function startPush(box) {
    var on = box.querySelector("[data-push-subscribe]");
    var off = box.querySelector("[data-push-unsubscribe]");
    var message = box.querySelector("[data-push-message]");
    box.hidden = false;

    function say(text, isError) {
      message.textContent = text || "";
      message.classList.toggle("inbox-push__message--error", Boolean(isError));
    }
    function showSubscribed(subscribed) {
      on.hidden = subscribed;
      off.hidden = !subscribed;
    }

    if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) {
      on.disabled = true;
      say(UNSUPPORTED, true);
      return;
    }
    navigator.serviceWorker.getRegistration("/").then(function (registration) {
      return registration ? registration.pushManager.getSubscription() : null;
    }).then(function (subscription) { showSubscribed(Boolean(subscription)); }).catch(function () {});

    on.addEventListener("click", function () {
      say("");
      on.disabled = true;
      Notification.requestPermission().then(function (permission) {
        if (permission !== "granted") {
          throw { userMessage: permission === "denied" ? BLOCKED : DISMISSED };
        }
        return navigator.serviceWorker.register("/sw.js", { scope: "/" });
      }).then(function () {
        return navigator.serviceWorker.ready;
      }).then(function (registration) {
        return fetch(box.getAttribute("data-push-key-url"), { credentials: "same-origin" })
          .then(function (response) { return response.json(); })
          .then(function (answer) {
            return registration.pushManager.subscribe({
              userVisibleOnly: true, applicationServerKey: base64UrlToBytes(answer.applicationServerKey)
            });
          });
      }).then(function (subscription) {
        return sendJson("POST", box.getAttribute("data-push-devices-url"), subscription.toJSON());
      }).then(function () {
        showSubscribed(true);
        say("Browser notifications are on.");
      }).catch(function (error) {
        say(error && error.userMessage ? error.userMessage : "Could not turn on browser notifications: " + (error && error.message), true);
      }).then(function () { on.disabled = false; });
    });

    off.addEventListener("click", function () {
      say("");
      navigator.serviceWorker.getRegistration("/").then(function (registration) {
        return registration ? registration.pushManager.getSubscription() : null;
      }).then(function (subscription) {
        if (!subscription) return null;
        var endpoint = subscription.endpoint;
        return subscription.unsubscribe().then(function () {
          return sendJson("DELETE", box.getAttribute("data-push-devices-url"), { endpoint: endpoint });
        });
      }).then(function () {
        showSubscribed(false);
        say("Browser notifications are off.");
      }).catch(function (error) {
        say("Could not turn off browser notifications: " + (error && error.message), true);
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.querySelector("[data-inbox-stream]");
    if (root) startStream(root);
    var box = document.querySelector("[data-push]");
    if (box) startPush(box);
  });
})();
