// Camera and microphone access, with every failure named: blocked (permission), no camera, no microphone.
import { browserFamily } from "./support.js";
import { showState } from "./notice.js";
import { t } from "./i18n.js";

export class MediaProblem extends Error {
  constructor(state, cause) {
    super(state);
    this.state = state; // "blocked" | "no_camera" | "no_microphone" | "unsupported"
    this.cause = cause;
  }
}

function classify(error, wanted) {
  const name = error && error.name;
  if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError") return "blocked";
  if (name === "NotFoundError" || name === "OverconstrainedError" || name === "DevicesNotFoundError") {
    return wanted === "video" ? "no_camera" : "no_microphone";
  }
  if (name === "NotReadableError" || name === "AbortError") return wanted === "video" ? "no_camera" : "no_microphone";
  return "unsupported";
}

// Ask for what the visit needs. A missing camera is not fatal (sound only); a blocked permission is.
export async function openMedia({ audio = true, video = true } = {}) {
  const devices = navigator.mediaDevices;
  if (video) {
    try {
      const stream = await devices.getUserMedia({ audio, video });
      return { stream, hasVideo: stream.getVideoTracks().length > 0, hasAudio: stream.getAudioTracks().length > 0 };
    } catch (error) {
      const state = classify(error, "video");
      if (state !== "no_camera" || !audio) throw new MediaProblem(state, error);
    }
  }
  try {
    const stream = await devices.getUserMedia({ audio, video: false });
    return { stream, hasVideo: false, hasAudio: stream.getAudioTracks().length > 0 };
  } catch (error) {
    throw new MediaProblem(classify(error, "audio"), error);
  }
}

export function stopStream(stream) {
  if (stream) stream.getTracks().forEach((track) => track.stop());
}

// Show a media problem in plain words (with the "how to allow" help of this browser when blocked).
export function showMediaProblem(problem) {
  if (problem.state === "blocked") {
    showState("blocked", {}, t(`howto.${browserFamily()}`));
  } else {
    showState(problem.state);
  }
  document.getElementById("app").dataset.media = problem.state;
}
