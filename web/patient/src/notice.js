// The one place that says where the patient stands: a heading, one sentence and what to do.
// Every state is named (state.<name>.* in the catalog); the page never shows a raw error.
import { has, t } from "./i18n.js";

const root = () => document.getElementById("notice");
// States after which nothing on the page can help: the buttons (join, try again, test my devices) go, so the
// page says only what to do (contact the clinic, open the newest link).
const FINAL = new Set(["over", "expired", "cancelled", "invalid"]);

export function isFinal(name) {
  return FINAL.has(name);
}

export function showState(name, values = {}, extra = "") {
  const box = root();
  box.dataset.state = name;
  box.hidden = false;
  box.querySelector("#notice-title").textContent = t(`state.${name}.title`, values);
  box.querySelector("#notice-text").textContent = t(`state.${name}.text`, values);
  const action = box.querySelector("#notice-action");
  const actionText = [has(`state.${name}.action`) ? t(`state.${name}.action`, values) : "", extra]
    .filter(Boolean)
    .join(" ");
  action.textContent = actionText;
  action.hidden = !actionText;
  document.getElementById("app").dataset.state = name;
  if (FINAL.has(name)) {
    for (const id of ["actions", "device-test"]) {
      const element = document.getElementById(id);
      if (element) element.hidden = true;
    }
  }
}

export function currentState() {
  return root().dataset.state || "";
}
