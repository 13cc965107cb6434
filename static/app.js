// memory-admin: the little the pages need beyond htmx. Everything works without it.
"use strict";

// A request htmx does not swap (403, 404, 429, 5xx, network down): say so in the
// aria-live status region instead of failing silently.
function showStatus(message) {
  const region = document.getElementById("status");
  if (!region) return;
  const box = document.createElement("div");
  box.className = "flash flash-error";
  box.textContent = message;
  region.replaceChildren(box);
}

document.addEventListener("htmx:responseError", (event) => {
  const xhr = event.detail.xhr;
  let message = `The server answered ${xhr.status}.`;
  const page = new DOMParser().parseFromString(xhr.responseText || "", "text/html");
  const text = page.querySelector(".error-message");
  if (text && text.textContent.trim()) message = text.textContent.trim();
  showStatus(message);
});

document.addEventListener("htmx:sendError", () => {
  showStatus("The server could not be reached. Check your connection and try again.");
});

// On a phone the filter form would fill the screen: start with it folded unless a
// filter is in use. (Without JavaScript it simply stays open.)
document.addEventListener("DOMContentLoaded", () => {
  if (!window.matchMedia("(max-width: 700px)").matches) return;
  for (const details of document.querySelectorAll("details.more-filters:not([data-active])")) {
    details.open = false;
  }
});

// --- Bulk actions -------------------------------------------------------------------------
// "Select all on this page": a checkbox shown only with JavaScript (without it the bulk
// bar's "All on this page" button does the same) that checks or clears every row's box.
function setUpSelectAll(root) {
  for (const box of root.querySelectorAll(".select-all-page")) {
    box.closest(".select-all").hidden = false;
    box.addEventListener("change", () => {
      for (const row of document.querySelectorAll(".row-select")) row.checked = box.checked;
    });
  }
}
document.addEventListener("DOMContentLoaded", () => setUpSelectAll(document));
document.addEventListener("htmx:afterSwap", (event) => setUpSelectAll(event.detail.target));
