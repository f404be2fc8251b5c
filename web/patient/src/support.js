// Can this browser run a video visit, and which one is it (for "how to allow the camera" help).
export function missingFeatures() {
  const missing = [];
  if (!window.isSecureContext) missing.push("secure-context");
  if (!navigator.mediaDevices || typeof navigator.mediaDevices.getUserMedia !== "function") missing.push("getUserMedia");
  if (typeof window.RTCPeerConnection !== "function") missing.push("RTCPeerConnection");
  if (typeof window.AudioContext !== "function" && typeof window.webkitAudioContext !== "function") missing.push("AudioContext");
  if (typeof window.Promise !== "function" || typeof window.fetch !== "function") missing.push("fetch");
  return missing;
}

export function browserFamily(userAgent = navigator.userAgent) {
  if (/Edg\//.test(userAgent)) return "edge";
  if (/Firefox\//.test(userAgent) || /FxiOS/.test(userAgent)) return "firefox";
  if (/CriOS|Chrome\/|Chromium\//.test(userAgent)) return "chrome";
  if (/Safari\//.test(userAgent)) return "safari";
  return "other";
}
