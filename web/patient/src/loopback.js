// The test call: the patient's camera and microphone go through a real WebRTC connection (two peer
// connections in this page, with encoding, ICE and DTLS-SRTP) and come back into a video element.
import { openMedia, stopStream } from "./media.js";

const CONNECT_WAIT_MS = 8000;

export async function loopbackCall(video) {
  const { stream, hasVideo } = await openMedia({ audio: true, video: true });
  const sender = new RTCPeerConnection();
  const receiver = new RTCPeerConnection();
  sender.addEventListener("icecandidate", (e) => e.candidate && receiver.addIceCandidate(e.candidate));
  receiver.addEventListener("icecandidate", (e) => e.candidate && sender.addIceCandidate(e.candidate));
  const remote = new MediaStream();
  receiver.addEventListener("track", (event) => {
    remote.addTrack(event.track);
    video.srcObject = remote;
  });
  stream.getTracks().forEach((track) => sender.addTrack(track, stream));
  const connected = new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), CONNECT_WAIT_MS);
    receiver.addEventListener("connectionstatechange", () => {
      if (receiver.connectionState === "connected") { clearTimeout(timer); resolve(true); }
      if (receiver.connectionState === "failed") { clearTimeout(timer); resolve(false); }
    });
  });
  await sender.setLocalDescription(await sender.createOffer());
  await receiver.setRemoteDescription(sender.localDescription);
  await receiver.setLocalDescription(await receiver.createAnswer());
  await sender.setRemoteDescription(receiver.localDescription);

  async function measure() {
    const ok = await connected;
    if (!ok) return { connected: false, rttMs: null, videoFrames: 0, audioBytes: 0 };
    await new Promise((resolve) => setTimeout(resolve, 1500)); // let media flow
    let rttMs = null;
    let videoFrames = 0;
    let audioBytes = 0;
    (await receiver.getStats()).forEach((report) => {
      if (report.type === "inbound-rtp" && report.kind === "video") videoFrames += report.framesDecoded || 0;
      if (report.type === "inbound-rtp" && report.kind === "audio") audioBytes += report.bytesReceived || 0;
      if (report.type === "candidate-pair" && report.nominated && report.currentRoundTripTime != null) {
        rttMs = Math.round(report.currentRoundTripTime * 1000);
      }
    });
    return { connected: true, rttMs: rttMs ?? 0, videoFrames, audioBytes };
  }

  return {
    hasVideo,
    measure,
    close() {
      sender.close();
      receiver.close();
      stopStream(stream);
    },
  };
}
