// The device test: speaker, microphone, camera, connection and a test call, one step at a time, each
// skippable, then a summary. In a visit the result is posted to our API (a device-test event the
// write-back sends to the EHR); opened from the EHR's device-test record it is only shown.
import { t } from "./i18n.js";
import { MediaProblem, openMedia, showMediaProblem, stopStream } from "./media.js";
import { measureConnection } from "./connection.js";
import { loopbackCall } from "./loopback.js";

export const STEPS = ["speaker", "microphone", "camera", "connection", "test_call"];

export class DeviceTest {
  constructor(root, { onDone }) {
    this.root = root;
    this.app = document.getElementById("app");
    this.onDone = onDone;
    this.results = {};
    this.measures = {};
    this.index = -1;
    this.cleanup = null;
    root.querySelectorAll(".dt-step").forEach((section) => {
      const step = section.dataset.step;
      section.querySelector(".dt-start").addEventListener("click", () => this.start(step));
      section.querySelector(".dt-skip").addEventListener("click", () => this.finish(step, "skipped"));
      section.querySelector(".dt-yes").addEventListener("click", () => this.finish(step, "passed"));
      section.querySelector(".dt-no").addEventListener("click", () => this.finish(step, "failed"));
    });
    root.querySelector("#dt-restart").addEventListener("click", () => this.begin());
  }

  section(step) {
    return this.root.querySelector(`.dt-step[data-step="${step}"]`);
  }

  begin() {
    this.results = {};
    this.measures = {};
    this.root.hidden = false;
    this.root.querySelector("#dt-summary").hidden = true;
    this.show(0);
  }

  show(index) {
    this.index = index;
    STEPS.forEach((step, i) => {
      const section = this.section(step);
      section.hidden = i !== index;
      section.querySelector(".dt-question").hidden = true;
      section.querySelector(".dt-output").textContent = "";
      section.querySelector(".dt-start").disabled = false;
    });
    this.app.dataset.deviceStep = STEPS[index];
    const heading = this.section(STEPS[index]).querySelector("h3");
    heading.focus();
  }

  async start(step) {
    const section = this.section(step);
    const output = section.querySelector(".dt-output");
    section.querySelector(".dt-start").disabled = true;
    this.stop();
    try {
      const run = {
        speaker: () => this.speaker(section),
        microphone: () => this.microphone(section),
        camera: () => this.camera(section),
        connection: () => this.connection(section, output),
        test_call: () => this.testCall(section, output),
      }[step];
      const ask = await run();
      if (ask) {
        section.querySelector(".dt-question").hidden = false;
        section.querySelector(".dt-yes").focus();
      }
    } catch (error) {
      if (error instanceof MediaProblem) {
        showMediaProblem(error);
        this.measures[`${step}Problem`] = error.state;
      }
      this.finish(step, "failed");
    }
  }

  stop() {
    if (this.cleanup) {
      const cleanup = this.cleanup;
      this.cleanup = null;
      cleanup();
    }
  }

  finish(step, result) {
    if (this.index < 0 || STEPS[this.index] !== step) return;
    this.stop();
    this.results[step] = result;
    this.app.dataset[`dt_${step}`] = result;
    if (this.index + 1 < STEPS.length) this.show(this.index + 1);
    else this.summary();
  }

  async speaker(section) {
    const Context = window.AudioContext || window.webkitAudioContext;
    const context = new Context();
    const oscillator = context.createOscillator();
    const gain = context.createGain();
    oscillator.frequency.value = 523.25;
    gain.gain.value = 0.2;
    oscillator.connect(gain).connect(context.destination);
    oscillator.start();
    oscillator.stop(context.currentTime + 1.2);
    this.cleanup = () => context.close();
    return true;
  }

  async microphone(section) {
    const { stream } = await openMedia({ audio: true, video: false });
    const Context = window.AudioContext || window.webkitAudioContext;
    const context = new Context();
    const analyser = context.createAnalyser();
    analyser.fftSize = 1024;
    context.createMediaStreamSource(stream).connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    const meter = section.querySelector("meter");
    let peak = 0;
    let frame = 0;
    const tick = () => {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (const s of samples) sum += s * s;
      const level = Math.min(1, Math.sqrt(sum / samples.length) * 4);
      peak = Math.max(peak, level);
      meter.value = level;
      meter.dataset.peak = peak.toFixed(3);
      this.measures.microphonePeak = Number(peak.toFixed(3));
      frame = requestAnimationFrame(tick);
    };
    tick();
    this.cleanup = () => {
      cancelAnimationFrame(frame);
      context.close();
      stopStream(stream);
    };
    return true;
  }

  async camera(section) {
    const { stream } = await openMedia({ audio: false, video: true });
    const video = section.querySelector("video");
    video.srcObject = stream;
    video.hidden = false;
    this.cleanup = () => {
      video.srcObject = null;
      video.hidden = true;
      stopStream(stream);
    };
    return true;
  }

  async connection(section, output) {
    output.textContent = t("dt.connection.running");
    const result = await measureConnection({
      pingUrl: this.app.dataset.pingUrl,
      payloadUrl: this.app.dataset.payloadUrl,
      relays: (this.app.dataset.relays || "").split(" ").filter(Boolean),
    });
    Object.assign(this.measures, { rttMs: result.rttMs, mbps: result.mbps, relays: result.relays });
    if (!result.reachable) {
      output.textContent = t("dt.connection.failed");
      this.finish("connection", "failed");
      return false;
    }
    const lines = [t("dt.connection.result", { rtt: result.rttMs, mbps: result.mbps })];
    if (result.relays === "blocked") lines.push(t("dt.connection.relays_blocked"));
    else if (result.relays === "reachable") lines.push(t("dt.connection.relays_ok"));
    const slow = result.rttMs > 800 || result.mbps < 1;
    if (slow) lines.push(t("dt.connection.slow"));
    output.textContent = lines.join(" ");
    const good = !slow && result.relays !== "blocked";
    section.dataset.result = good ? "passed" : "failed";
    // Automatic: the patient reads the figures, then goes on.
    setTimeout(() => this.finish("connection", good ? "passed" : "failed"), 1500);
    return false;
  }

  async testCall(section, output) {
    const video = section.querySelector("video");
    const call = await loopbackCall(video);
    this.cleanup = () => {
      call.close();
      video.srcObject = null;
      video.hidden = true;
    };
    video.hidden = !call.hasVideo;
    const stats = await call.measure();
    Object.assign(this.measures, { callRttMs: stats.rttMs, callVideo: stats.videoFrames > 0, callAudio: stats.audioBytes > 0 });
    if (!stats.connected) {
      output.textContent = t("dt.test_call.failed");
      this.measures.callConnected = false;
      this.finish("test_call", "failed");
      return false;
    }
    this.measures.callConnected = true;
    output.textContent = t("dt.test_call.result", { rtt: stats.rttMs });
    return true;
  }

  summary() {
    this.app.dataset.deviceStep = "summary";
    STEPS.forEach((step) => { this.section(step).hidden = true; });
    const box = this.root.querySelector("#dt-summary");
    const list = box.querySelector("#dt-results");
    list.replaceChildren(
      ...STEPS.map((step) => {
        const item = document.createElement("li");
        item.dataset.step = step;
        item.dataset.result = this.results[step];
        const name = document.createElement("span");
        name.textContent = t(`dt.${step}.name`);
        const result = document.createElement("strong");
        result.textContent = t(`dt.result.${this.results[step]}`);
        item.append(name, ": ", result);
        return item;
      }),
    );
    const values = Object.values(this.results);
    const failed = values.includes("failed");
    const none = values.every((v) => v === "skipped");
    const standalone = this.app.dataset.mode === "standalone";
    const verdict = none ? "dt.summary.none" : failed ? (standalone ? "dt.summary.some_failed_standalone" : "dt.summary.some_failed") : "dt.summary.all_good";
    box.querySelector("#dt-verdict").textContent = t(verdict);
    box.querySelector("#dt-saved").textContent = "";
    box.hidden = false;
    box.querySelector("h3").focus();
    this.onDone({ steps: { ...this.results }, measures: { ...this.measures } }, box.querySelector("#dt-saved"));
  }
}
