// memory-admin: keyboard shortcuts, focus after htmx swaps, and what #status announces.
// Without JavaScript none of this exists; the footer's "Keyboard shortcuts" says so.
"use strict";

(() => {
  const ROW = ".memory-row";
  const LIVE_ROW = ".memory-row:not(.memory-row-deleted)";
  // Inputs that take no typed text: letters pressed on them are free for shortcuts.
  const NON_TEXT_INPUTS = new Set(["checkbox", "radio", "button", "submit", "reset", "image", "range", "color", "file"]);

  // --- Keyboard shortcuts --------------------------------------------------------------

  /** True when key presses on target type text (a field, a select, contenteditable). */
  function typingIn(target) {
    if (!(target instanceof Element)) return false;
    if (target.isContentEditable || target.closest("textarea, select")) return true;
    return target instanceof HTMLInputElement && !NON_TEXT_INPUTS.has(target.type);
  }

  /** The row holding the focus, else the one last made current by j/k. */
  function currentRow() {
    const active = document.activeElement;
    const row = active instanceof Element ? active.closest(ROW) : null;
    return row || document.querySelector(`${ROW}.is-current`);
  }

  /** Make row the current one: focused (not a tab stop), ringed and scrolled into view. */
  function focusRow(row) {
    markCurrent(row);
    row.tabIndex = -1;
    row.focus({ preventScroll: true });
    row.scrollIntoView({ block: "nearest" });
  }

  function markCurrent(row) {
    for (const other of document.querySelectorAll(`${ROW}.is-current`)) {
      if (other !== row) other.classList.remove("is-current");
    }
    if (row) row.classList.add("is-current");
  }

  /** j and k: the next or previous row, stopping at the ends of the list. */
  function move(step) {
    const rows = [...document.querySelectorAll(ROW)];
    if (!rows.length) return false;
    const here = rows.indexOf(currentRow());
    const next = here < 0 ? (step > 0 ? 0 : rows.length - 1) : here + step;
    focusRow(rows[Math.max(0, Math.min(rows.length - 1, next))]);
    return true;
  }

  function focusSearch() {
    const box = document.querySelector("form[role=search] input[type=search], input[type=search]");
    if (!box) return false;
    box.focus();
    box.select();
    return true;
  }

  function toggleSelection() {
    const box = currentRow()?.querySelector("input.row-select");
    if (!box) return false;
    box.checked = !box.checked;
    box.dispatchEvent(new Event("change", { bubbles: true }));
    return true;
  }

  function clickIn(selector) {
    const target = currentRow()?.querySelector(selector);
    if (!target) return false;
    target.click();
    return true;
  }

  /** The first field of row's open editor, focused; false if it has none open. */
  function focusEditor(row) {
    const field = row?.querySelector(".memory-editor input:not([type=hidden])");
    field?.focus();
    return Boolean(field);
  }

  function deleteRow() {
    const form = currentRow()?.querySelector("form.row-actions[action$='/delete']");
    if (!form) return false;
    form.requestSubmit();
    return true;
  }

  let opener = null;

  function showShortcuts() {
    const dialog = document.getElementById("shortcuts");
    if (!dialog || dialog.open) return false;
    opener = document.activeElement;
    dialog.showModal();
    return true;
  }

  document.addEventListener("DOMContentLoaded", () => {
    // Esc or Close: focus goes back where it was when `?` was pressed.
    document.getElementById("shortcuts")?.addEventListener("close", () => {
      if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
      opener = null;
    });
  });

  const SHORTCUTS = {
    "/": focusSearch,
    j: () => move(1),
    k: () => move(-1),
    x: toggleSelection,
    e: () => clickIn("a.edit-link") || focusEditor(currentRow()),
    d: deleteRow,
    "?": showShortcuts,
  };

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.altKey || event.metaKey || event.isComposing) return;
    const target = event.target;
    if (event.key === "Escape" && target instanceof Element) {
      // Esc in a row's editor closes it (its Done link); in the search box, leaves it.
      const done = target.closest(".memory-editor")?.querySelector("a.done-link");
      if (done) {
        event.preventDefault();
        done.click();
      } else if (target.matches("input[type=search]")) {
        event.preventDefault();  // keep what was typed (Chromium would clear it)
        target.blur();
      }
      return;
    }
    if (typingIn(target) || document.querySelector("dialog[open]")) return;
    const action = Object.hasOwn(SHORTCUTS, event.key) ? SHORTCUTS[event.key] : null;
    if (action && action()) event.preventDefault();
  });

  // Tabbing into a row makes it the current one; leaving the rows clears it.
  document.addEventListener("focusin", (event) => {
    markCurrent(event.target instanceof Element ? event.target.closest(ROW) : null);
  });

  // --- Focus after htmx swaps ----------------------------------------------------------
  // What a request will replace is known before it is sent; where focus goes is decided
  // once the new content is in, by ids (the element that sent the request may be gone).

  let plan = null;

  document.addEventListener("htmx:beforeRequest", (event) => {
    const elt = event.detail.elt;
    plan = null;
    if (!(elt instanceof Element)) return;
    const row = elt.closest(ROW);
    const id = row?.dataset.memoryId;
    if (elt.matches("a.edit-link")) plan = { kind: "editor-open", id };
    else if (elt.matches("a.done-link")) plan = { kind: "editor-close", id };
    else if (elt.closest(".memory-editor")) {
      const editor = elt.closest(".memory-editor");
      plan = { kind: "editor-save", editorId: editor.id, form: elt.closest("form")?.classList[0] };
    } else if (row && elt.matches("form[action$='/delete']")) plan = { kind: "deleted", id };
    else if (row && elt.matches("form[action$='/restore']")) plan = { kind: "restored", id };
    else if (elt.closest("#filters")) plan = { kind: "filtered" };
    else if (elt.closest(".pager")) plan = { kind: "paged" };
    else plan = { kind: "other", target: event.detail.target?.id };
  });

  // After the settle, not the swap: htmx wires up new content (hx-post...) in its settle.
  document.addEventListener("htmx:afterSettle", () => {
    const done = plan;
    plan = null;
    if (done) refocus(done);
  });

  function byId(id) {
    return id ? document.getElementById(id) : null;
  }

  function focusResults() {
    const results = document.getElementById("results");
    if (!results) return;
    results.tabIndex = -1;
    results.focus();
  }

  function focusLost() {
    const active = document.activeElement;
    return !active || active === document.body || !active.isConnected;
  }

  function refocus({ kind, id, editorId, form, target }) {
    const row = byId(id && `memory-${id}`);
    if (kind === "editor-open") {
      focusEditor(row);
    } else if (kind === "editor-close") {
      row?.querySelector("a.edit-link")?.focus();
    } else if (kind === "editor-save" && focusLost()) {
      // htmx keeps focus on a field with an id; after a button, go back to its form's field.
      const editor = byId(editorId);
      const field = [`form.${form} input:not([type=hidden])`, ".tag-add input", "input:not([type=hidden])"]
        .map((selector) => editor?.querySelector(selector))
        .find(Boolean);
      field?.focus();
    } else if (kind === "deleted" && row) {
      const after = nextLive(row, "nextElementSibling") || nextLive(row, "previousElementSibling");
      if (after) focusRow(after);
      else focusResults();
    } else if (kind === "restored" && row) {
      focusRow(row);
    } else if (kind === "filtered") {
      announceCount();
      if (focusLost()) document.getElementById("q")?.focus();
    } else if (kind === "paged") {
      announceCount();
      const first = document.querySelector(LIVE_ROW);
      if (first) focusRow(first);
      else focusResults();
    } else if (target === "results" && focusLost()) {
      focusResults();
    }
  }

  function nextLive(row, direction) {
    let other = row[direction];
    while (other && !other.matches(LIVE_ROW)) other = other[direction];
    return other;
  }

  // --- One live region ------------------------------------------------------------------
  // Only #status is aria-live. A list replaced by filtering or paging says its new count
  // there (hidden text: the count is already on screen).

  function announceCount() {
    const region = document.getElementById("status");
    const count = document.querySelector("#results .count");
    if (!region || !count) return;
    const note = document.createElement("span");
    note.className = "visually-hidden";
    note.textContent = `${count.textContent.trim()} shown.`;
    region.replaceChildren(note);
  }
})();
