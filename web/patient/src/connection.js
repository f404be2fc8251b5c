// Connection check: round-trip time and download speed to our own app, and whether the browser can reach
// the media relays (ICE servers) a call needs.
const PINGS = 5;
const RELAY_WAIT_MS = 5000;

async function timed(url) {
  const started = performance.now();
  const response = await fetch(url, { cache: "no-store", credentials: "omit" });
  const body = await response.arrayBuffer();
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return { ms: performance.now() - started, bytes: body.byteLength };
}

export async function relayReachability(relays) {
  if (!relays.length || typeof RTCPeerConnection !== "function") return "not_configured";
  const pc = new RTCPeerConnection({ iceServers: relays.map((url) => ({ urls: url })) });
  try {
    const found = new Promise((resolve) => {
      const timer = setTimeout(() => resolve("blocked"), RELAY_WAIT_MS);
      pc.addEventListener("icecandidate", (event) => {
        const candidate = event.candidate && event.candidate.candidate;
        if (candidate && / typ (srflx|relay) /.test(candidate)) {
          clearTimeout(timer);
          resolve("reachable");
        } else if (!event.candidate) {
          clearTimeout(timer);
          resolve("blocked");
        }
      });
    });
    pc.createDataChannel("probe");
    await pc.setLocalDescription(await pc.createOffer());
    return await found;
  } finally {
    pc.close();
  }
}

export async function measureConnection({ pingUrl, payloadUrl, relays }) {
  const times = [];
  try {
    for (let i = 0; i < PINGS; i += 1) times.push((await timed(pingUrl)).ms);
  } catch (error) {
    return { reachable: false, rttMs: null, mbps: null, relays: "unknown" };
  }
  times.sort((a, b) => a - b);
  const rttMs = Math.round(times[Math.floor(times.length / 2)]);
  let mbps = null;
  try {
    const { ms, bytes } = await timed(payloadUrl);
    mbps = Number(((bytes * 8) / 1e6 / Math.max(ms / 1000, 0.001)).toFixed(1));
  } catch (error) {
    return { reachable: false, rttMs, mbps: null, relays: "unknown" };
  }
  return { reachable: true, rttMs, mbps, relays: await relayReachability(relays) };
}
