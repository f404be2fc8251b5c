// The page's words in the patient's language: the same catalog the server renders from
// (lib/web/strings/patient.json), bundled by esbuild.
import catalog from "../../../lib/web/strings/patient.json";

let language = "en";

export function setLanguage(code) {
  language = catalog[code] ? code : "en";
}

export function t(key, values = {}) {
  const words = catalog[language] || catalog.en;
  const template = words[key] ?? catalog.en[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (_, name) => (name in values ? String(values[name]) : `{${name}}`));
}

export function has(key) {
  return key in (catalog[language] || catalog.en);
}
