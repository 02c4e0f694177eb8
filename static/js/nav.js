/* The main navigation on a narrow screen: the sidebar folds away behind the Menu button in the
 * top bar (templates/base.html), so a phone's page starts with its content, not a strip of links.
 *
 * Loaded in <head> without defer: it marks <html> with "nav-js" before the page is drawn, so the
 * folded sidebar never flashes open. Without this script (or JavaScript) the Menu button stays
 * hidden and the sidebar shows as a list above the content (static/css/lattice.css). */
(() => {
  "use strict";

  const root = document.documentElement;
  root.classList.add("nav-js");

  const toggles = () => document.querySelectorAll("[data-nav-toggle]");
  const setOpen = (open) => {
    root.classList.toggle("nav-open", open);
    for (const button of toggles()) { button.setAttribute("aria-expanded", String(open)); }
  };

  document.addEventListener("click", (event) => {
    const button = event.target.closest && event.target.closest("[data-nav-toggle]");
    if (button) { setOpen(!root.classList.contains("nav-open")); }
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && root.classList.contains("nav-open")) {
      setOpen(false);
      const button = toggles()[0];
      if (button) { button.focus(); }
    }
  });
})();
