/* ferry console: follow a job over server-sent events (EventSource, no library needed).
   An element with data-events="URL" and data-reload="URL" gets its [data-progress-table] child
   replaced by each "progress" event and its [data-controls] child by each "controls" event; on
   "done" the stream is closed and the whole job panel is reloaded from data-reload (a final job's
   panel has no stream). A stream whose element left the page (another job opened, a control
   answered) is closed. */
(function () {
  "use strict";
  var streams = [];

  function closeDetached() {
    streams = streams.filter(function (s) {
      if (s.element.isConnected) { return true; }
      s.source.close();
      return false;
    });
  }

  function follow(element) {
    if (element.ferryFollowed) { return; }
    element.ferryFollowed = true;
    var source = new EventSource(element.getAttribute("data-events"));
    function replace(selector) {
      var target = element.querySelector(selector);
      return function (event) {
        target.innerHTML = event.data;
        htmx.process(target);  /* the controls are htmx buttons */
      };
    }
    source.addEventListener("progress", replace("[data-progress-table]"));
    source.addEventListener("controls", replace("[data-controls]"));
    source.addEventListener("done", function () {
      source.close();
      htmx.ajax("GET", element.getAttribute("data-reload"), {target: "#job-detail", swap: "innerHTML"});
    });
    streams.push({element: element, source: source});
  }

  htmx.onLoad(function (content) {
    closeDetached();
    if (content.matches && content.matches("[data-events]")) { follow(content); }
    content.querySelectorAll("[data-events]").forEach(follow);
  });
})();
