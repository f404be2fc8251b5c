// The patient's page: reads what the server rendered (data- attributes of #app; no inline script), then
// runs the browser-side states, the device test and the visit.
import { postJson } from "./api.js";
import { DeviceTest } from "./devicetest.js";
import { setLanguage, t } from "./i18n.js";
import { MediaProblem } from "./media.js";
import { showState } from "./notice.js";
import { missingFeatures } from "./support.js";

const app = document.getElementById("app");
const data = app.dataset;
setLanguage(document.documentElement.lang);

function byId(id) {
  return document.getElementById(id);
}

function watchConnection() {
  let before = null;
  window.addEventListener("offline", () => {
    const notice = byId("notice");
    before = { state: notice.dataset.state, html: notice.innerHTML, hidden: notice.hidden };
    showState("offline");
  });
  window.addEventListener("online", () => {
    if (!before) return;
    const notice = byId("notice");
    notice.innerHTML = before.html;
    notice.hidden = before.hidden;
    notice.dataset.state = before.state || "";
    data.state = before.state || "";
    before = null;
  });
}

function start() {
  watchConnection();
  const missing = missingFeatures();
  if (missing.length) {
    data.missing = missing.join(" ");
    showState("unsupported");
    byId("device-test").hidden = true;
    byId("actions").hidden = true;
    return;
  }
  const canJoin = data.mode === "visit" && data.phase === "open";
  const canTest = data.phase === "open" || data.phase === "too_early" || data.mode === "standalone";
  if (data.mode === "visit" && canTest) {
    postJson(data.eventsUrl, { type: "page_opened", attempt: data.attempt }, { keepalive: true }).catch(() => {});
  }
  if (!canTest) return;

  const join = byId("join");
  const test = new DeviceTest(byId("device-test"), {
    onDone: (result, saved) => {
      (join || byId("dt-restart")).focus();
      if (data.mode !== "visit") {
        saved.textContent = t("dt.summary.standalone_done");
        return;
      }
      postJson(data.eventsUrl, { type: "device_test", attempt: data.attempt, ...result })
        .then(() => {
          saved.textContent = t("dt.summary.saved");
          data.deviceTestSaved = "true";
        })
        .catch(() => {
          data.deviceTestSaved = "false";
        });
    },
  });
  byId("start-test").addEventListener("click", () => test.begin());
  if (data.mode === "standalone") test.begin();
  if (!canJoin) return;

  let visit = null;
  let audioOnly = false;
  async function go() {
    if (navigator.onLine === false) {
      showState("offline"); // the page continues when the connection is back (watchConnection)
      return;
    }
    join.disabled = true;
    try {
      if (!visit) {
        showState("connecting");
        const { Visit } = await import("./call.js"); // the Calling SDK chunk, loaded only to join
        visit = new Visit({ callUrl: data.callUrl, app });
      }
      if (!audioOnly) {
        const media = await visit.checkMedia();
        if (!media.hasVideo) {
          audioOnly = true;
          showState("no_camera");
          join.textContent = t("action.join_audio");
          join.disabled = false;
          return;
        }
      }
      byId("device-test").hidden = true;
      byId("rejoin").hidden = true;
      byId("retry").hidden = true;
      const joined = await visit.join({ withVideo: !audioOnly });
      if (!joined) byId("retry").hidden = false;
      else join.hidden = true;
    } catch (error) {
      // Offline, the Calling SDK's chunk itself cannot load: that is the offline state, not the network's fault.
      if (!(error instanceof MediaProblem)) showState(navigator.onLine === false ? "offline" : "unreachable");
    } finally {
      join.disabled = false;
    }
  }
  join.addEventListener("click", go);
  byId("rejoin").addEventListener("click", go);
  byId("retry").addEventListener("click", go);
}

start();
