/* File inputs with data-max-files / data-max-bytes: tell the user at once when too many or
   too large files are chosen, instead of after a long upload ends in 413. The server checks
   everything again (docs/uploads.md); this is only a courtesy. The message goes into the
   input's aria-describedby element with class field-error. */
document.addEventListener("change", function (event) {
  var input = event.target;
  if (!input.matches || !input.matches("input[type=file][data-max-files]")) return;
  var maxFiles = parseInt(input.dataset.maxFiles, 10), maxBytes = parseInt(input.dataset.maxBytes, 10);
  var message = "";
  if (input.files.length > maxFiles) {
    message = "最多选择 " + maxFiles + " 个文件，请重新选择";
  } else {
    for (var i = 0; i < input.files.length; i++) {
      if (input.files[i].size > maxBytes) {
        message = "“" + input.files[i].name + "”超过 " + Math.round(maxBytes / 1048576) + " MB，请压缩后重新选择";
        break;
      }
    }
  }
  var ids = (input.getAttribute("aria-describedby") || "").split(" ");
  var box = null;
  ids.forEach(function (id) {
    var el = id && document.getElementById(id);
    if (el && el.classList.contains("field-error")) box = el;
  });
  input.setCustomValidity(message);
  if (message) input.value = "";
  if (box) { box.textContent = message; box.hidden = !message; }
  if (message) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
});
