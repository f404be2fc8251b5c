// The visit itself: an ACS identity from our API, the Calling SDK's call agent, and a join of the Teams
// meeting by its link as an anonymous guest. Call state lives here and is rendered in one place.
import { CallClient, LocalVideoStream, VideoStreamRenderer } from "@azure/communication-calling";
import { AzureCommunicationTokenCredential } from "@azure/communication-common";
import { ApiProblem, postJson, stateOf } from "./api.js";
import { t } from "./i18n.js";
import { MediaProblem, openMedia, showMediaProblem, stopStream } from "./media.js";
import { showState } from "./notice.js";
import { stateAfterCall, stateOfCall } from "./call_states.js";

const AGENT_WAIT_MS = 30000;

function withTimeout(promise, ms) {
  return Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error("timeout")), ms))]);
}

export class Visit {
  constructor({ callUrl, app }) {
    this.callUrl = callUrl;
    this.app = app;
    this.callClient = null;
    this.agent = null;
    this.call = null;
    this.localVideo = null;
    this.cameras = [];
    this.cameraIndex = 0;
    this.leaving = false;
    this.muted = false;
    this.renderers = [];
    this.el = {
      section: document.getElementById("call"),
      local: document.getElementById("local-video"),
      remote: document.getElementById("remote-video"),
      mic: document.getElementById("mic-toggle"),
      camera: document.getElementById("camera-toggle"),
      switchCamera: document.getElementById("switch-camera"),
      leave: document.getElementById("leave"),
    };
    this.el.mic.addEventListener("click", () => this.toggleMic());
    this.el.camera.addEventListener("click", () => this.toggleCamera());
    this.el.switchCamera.addEventListener("click", () => this.switchCamera());
    this.el.leave.addEventListener("click", () => this.leave());
  }

  stage(name) {
    this.app.dataset.callStage = name; // where the join got to (read by the browser tests and support)
  }

  // Check camera and microphone first: a blocked permission or missing camera gets its own message
  // before anything is asked of the video service.
  async checkMedia() {
    try {
      const media = await openMedia({ audio: true, video: true });
      stopStream(media.stream);
      return media;
    } catch (error) {
      if (error instanceof MediaProblem) showMediaProblem(error);
      throw error;
    }
  }

  async join({ withVideo }) {
    this.leaving = false;
    this.wasAdmitted = false;
    showState("connecting");
    this.stage("token");
    let credential;
    try {
      credential = await postJson(this.callUrl, {});
    } catch (error) {
      this.stage("token-failed");
      showState(error instanceof ApiProblem ? stateOf(error) : "unreachable");
      return false;
    }
    this.stage("agent");
    this.app.dataset.meetingLink = credential.meetingLink;
    try {
      if (!this.callClient) this.callClient = new CallClient();
      if (!this.agent) {
        const tokenCredential = new AzureCommunicationTokenCredential(credential.token);
        this.agent = await withTimeout(
          this.callClient.createCallAgent(tokenCredential, { displayName: credential.displayName }),
          AGENT_WAIT_MS,
        );
      }
      this.stage("joining");
      const options = { audioOptions: { muted: false } };
      if (withVideo) {
        const deviceManager = await this.callClient.getDeviceManager();
        this.cameras = await deviceManager.getCameras();
        if (this.cameras.length) {
          this.localVideo = new LocalVideoStream(this.cameras[this.cameraIndex % this.cameras.length]);
          options.videoOptions = { localVideoStreams: [this.localVideo] };
        }
      }
      this.call = this.agent.join({ meetingLink: credential.meetingLink }, options);
      this.stage("joined");
    } catch (error) {
      this.stage("agent-failed");
      this.app.dataset.callError = (error && (error.code || error.name || error.message)) || "unknown";
      showState(navigator.onLine === false ? "offline" : "unreachable");
      this.reset();
      return false;
    }
    this.el.section.hidden = false;
    this.call.on("stateChanged", () => this.render());
    this.call.on("remoteParticipantsUpdated", () => this.showRemote());
    this.render();
    if (this.localVideo) this.showLocal();
    return true;
  }

  render() {
    const state = this.call ? this.call.state : "None";
    this.app.dataset.callState = state;
    this.el.mic.textContent = t(this.muted ? "action.mic_on" : "action.mic_off");
    this.el.mic.setAttribute("aria-pressed", String(this.muted));
    this.el.camera.textContent = t(this.localVideo ? "action.camera_off" : "action.camera_on");
    this.el.switchCamera.hidden = this.cameras.length < 2;
    if (state === "Disconnected") {
      this.ended();
      return;
    }
    if (state === "InLobby" || state === "Connected") this.wasAdmitted = true;
    const shown = stateOfCall(state);
    if (shown) showState(shown);
    if (state === "Connected") this.showRemote();
  }

  // Why the call ended, in plain words: left (our Leave), ended by the clinician, dropped, or never reached.
  ended() {
    const reason = (this.call && this.call.callEndReason) || {};
    this.app.dataset.endCode = `${reason.code ?? ""}/${reason.subCode ?? ""}`;
    const state = stateAfterCall({ leaving: this.leaving, wasAdmitted: this.wasAdmitted, reason });
    this.reset();
    showState(state);
    document.getElementById(state === "unreachable" ? "retry" : "rejoin").hidden = false;
    this.el.section.hidden = true;
  }

  reset() {
    this.renderers.forEach((renderer) => renderer.dispose());
    this.renderers = [];
    this.call = null;
    this.localVideo = null;
  }

  async showLocal() {
    const renderer = new VideoStreamRenderer(this.localVideo);
    this.renderers.push(renderer);
    const view = await renderer.createView({ scalingMode: "Crop", isMirrored: true });
    this.el.local.replaceChildren(view.target);
  }

  async showRemote() {
    if (!this.call) return;
    for (const participant of this.call.remoteParticipants) {
      for (const stream of participant.videoStreams) {
        if (stream.isAvailable && !this.el.remote.dataset.streamId) {
          this.el.remote.dataset.streamId = String(stream.id);
          const renderer = new VideoStreamRenderer(stream);
          this.renderers.push(renderer);
          const view = await renderer.createView({ scalingMode: "Fit" });
          this.el.remote.replaceChildren(view.target);
        }
      }
    }
  }

  async toggleMic() {
    if (!this.call) return;
    if (this.muted) await this.call.unmute(); else await this.call.mute();
    this.muted = !this.muted;
    this.render();
  }

  async toggleCamera() {
    if (!this.call) return;
    if (this.localVideo) {
      await this.call.stopVideo(this.localVideo);
      this.localVideo = null;
      this.el.local.replaceChildren();
    } else if (this.cameras.length) {
      this.localVideo = new LocalVideoStream(this.cameras[this.cameraIndex % this.cameras.length]);
      await this.call.startVideo(this.localVideo);
      this.showLocal();
    }
    this.render();
  }

  async switchCamera() {
    if (!this.localVideo || this.cameras.length < 2) return;
    this.cameraIndex = (this.cameraIndex + 1) % this.cameras.length;
    await this.localVideo.switchSource(this.cameras[this.cameraIndex]);
  }

  async leave() {
    if (!this.call) return;
    this.leaving = true;
    await this.call.hangUp();
  }
}
