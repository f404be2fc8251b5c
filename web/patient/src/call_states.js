// What the patient is told for each call state of the Calling SDK, and why a call ended. Pure functions:
// tested with node's test runner (web/patient/test), since a real call needs Microsoft's cloud.

// The page's state while the call runs ("" = keep the current message).
export function stateOfCall(callState) {
  switch (callState) {
    case "Connecting": case "Ringing": case "EarlyMedia": return "connecting";
    case "InLobby": return "lobby";
    case "Connected": case "LocalHold": case "RemoteHold": return "connected";
    default: return "";
  }
}

// The page's state once the call is Disconnected.
//   leaving: the patient pressed Leave.  wasAdmitted: the call reached the lobby or the visit.
//   reason: the SDK's callEndReason {code, subCode}.
export function stateAfterCall({ leaving, wasAdmitted, reason }) {
  if (leaving) return "left";
  const code = reason && typeof reason.code === "number" ? reason.code : null;
  if (!wasAdmitted) return "unreachable"; // never got in: the service or the meeting could not be reached
  if (code === 0 || code === 487) return "ended"; // ended normally: the clinician ended or removed the call
  return "dropped"; // network, media or service failure after being in
}
