/* Herald's service worker: shows web-push notifications and opens their link on click.
   Served at /sw.js (scope "/") by the inbox blueprint. */
"use strict";

function safeUrl(value) {
  if (typeof value !== "string" || !value) return null;
  try {
    var url = new URL(value, self.location.origin);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
  } catch (error) {
    return null;
  }
}

self.addEventListener("push", function (event) {
  var payload = {};
  if (event.data) {
    try { payload = event.data.json(); } catch (error) { payload = { body: event.data.text() }; }
  }
  var data = payload.data || {};
  var link = safeUrl(payload.url || payload.deep_link || data.url || data.deep_link) || new URL("/inbox", self.location.origin).href;
  event.waitUntil(self.registration.showNotification(payload.title || "New notification", {
    body: payload.body || "",
    tag: payload.collapse_key || payload.tag || undefined,
    data: { url: link }
  }));
});

self.addEventListener("notificationclick", function (event) {
  event.notification.close();
  var link = (event.notification.data && event.notification.data.url) || new URL("/inbox", self.location.origin).href;
  event.waitUntil(self.clients.matchAll({ type: "window", includeUncontrolled: true }).then(function (windows) {
    for (var i = 0; i < windows.length; i++) {
      if (windows[i].url === link && "focus" in windows[i]) return windows[i].focus();
    }
    return self.clients.openWindow(link);
  }));
});
