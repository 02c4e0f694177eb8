// The new-notebook form: the image field only for the custom template.
// Without this script the field shows (labelled "custom template only") and the
// server asks for it only when the custom template is chosen.
(function () {
  "use strict";
  var form = document.getElementById("nb-create");
  if (!form) { return; }
  var template = form.querySelector("select[name=template]");
  var custom = form.querySelector("[data-custom-image]");
  if (!template || !custom) { return; }
  function sync() {
    var show = template.value === "custom";
    custom.hidden = !show;
    var input = custom.querySelector("input");
    if (input) { input.disabled = !show; }
  }
  template.addEventListener("change", sync);
  sync();
})();
