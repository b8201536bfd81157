// The callback form: after a refused submission, focus goes to the first field in error (its
// message is read with it, through aria-describedby), or to the refusal message. No inline script:
// the pages' CSP forbids it.
"use strict";

(function () {
  const first = document.querySelector('.callback-form [aria-invalid="true"]') || document.getElementById("refusal");
  if (first) first.focus();
})();
