/* Filters that apply as soon as a choice is made (<select data-autosubmit>); without
   JavaScript the form's <noscript> button does the same. Kept out of the templates because
   the Content-Security-Policy allows scripts from our own files only. */
document.addEventListener("change", function (event) {
  var el = event.target;
  if (el.matches && el.matches("[data-autosubmit]") && el.form) el.form.submit();
});
