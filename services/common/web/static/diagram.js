/* Shows a case's BPMN diagram (the version it runs on) with its progress marked.
   Progressive enhancement: the case page works without it. */
document.addEventListener("DOMContentLoaded", function () {
  var el = document.getElementById("diagram");
  if (!el || !window.BpmnJS) return;
  var viewer = new window.BpmnJS({ container: el });
  fetch(el.dataset.src, { credentials: "same-origin" })
    .then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.text();
    })
    .then(function (xml) { return viewer.importXML(xml); })
    .then(function () {
      var canvas = viewer.get("canvas");
      var registry = viewer.get("elementRegistry");
      function mark(ids, marker) {
        (ids || "").split(" ").forEach(function (id) {
          if (id && registry.get(id)) canvas.addMarker(id, marker);
        });
      }
      mark(el.dataset.done, "fzt-done");
      mark(el.dataset.active, "fzt-active");
      canvas.zoom("fit-viewport");
      el.setAttribute("data-ready", "true");
    })
    .catch(function (err) {
      el.textContent = "流程图加载失败：" + err.message;
    });
});
