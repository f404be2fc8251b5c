// The one place that says where the patient stands: a heading, one sentence and what to do.
// Every state is named (state.<name>.* in the catalog); the page never shows a raw error.
import { has, t } from "./i18n.js";

const root = () => document.getElementById("notice");

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
}

export function currentState() {
  return root().dataset.state || "";
}
