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

// --- API tokens ---------------------------------------------------------------------------
// The new secret's input is selected when it appears, and its Copy button (hidden without
// JavaScript, where the label asks to select and copy by hand) copies it and says so in
// the status region.
function selectNewSecret(root) {
  const input = root.querySelector ? root.querySelector("#token-secret") : null;
  if (!input) return;
  for (const button of document.querySelectorAll("button[data-copy-from]")) button.hidden = false;
  input.focus();
  input.select();
}

document.addEventListener("DOMContentLoaded", () => selectNewSecret(document));
document.addEventListener("htmx:afterSettle", (event) => selectNewSecret(event.detail.elt || document));

document.addEventListener("click", async (event) => {
  const button = event.target.closest ? event.target.closest("button[data-copy-from]") : null;
  if (!button) return;
  const input = document.getElementById(button.dataset.copyFrom);
  if (!input) return;
  input.focus();
  input.select();
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    showStatus("Copying did not work here: the secret is selected, press Ctrl+C (⌘C) to copy it.");
    return;
  }
  const region = document.getElementById("status");
  if (!region) return;
  const box = document.createElement("div");
  box.className = "flash";
  box.textContent = "Copied the secret to the clipboard.";
  region.replaceChildren(box);
  button.textContent = "Copied";
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
