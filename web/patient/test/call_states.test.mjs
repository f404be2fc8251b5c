// node --test web/patient/test: the call states the patient is told (run by tests/unit/web).
import assert from "node:assert/strict";
import test from "node:test";
import { stateAfterCall, stateOfCall } from "../src/call_states.js";

test("lobby, connecting and in-visit states", () => {
  assert.equal(stateOfCall("InLobby"), "lobby");
  assert.equal(stateOfCall("Connecting"), "connecting");
  assert.equal(stateOfCall("Connected"), "connected");
  assert.equal(stateOfCall("Disconnecting"), "");
});

test("the clinician ending the visit is ended, not dropped", () => {
  assert.equal(stateAfterCall({ leaving: false, wasAdmitted: true, reason: { code: 0, subCode: 0 } }), "ended");
  assert.equal(stateAfterCall({ leaving: false, wasAdmitted: true, reason: { code: 487, subCode: 0 } }), "ended");
});

test("a network failure after being in is dropped; before getting in it is unreachable", () => {
  const network = { code: 490, subCode: 4525 };
  assert.equal(stateAfterCall({ leaving: false, wasAdmitted: true, reason: network }), "dropped");
  assert.equal(stateAfterCall({ leaving: false, wasAdmitted: false, reason: network }), "unreachable");
});

test("the patient's own Leave is left whatever the code", () => {
  assert.equal(stateAfterCall({ leaving: true, wasAdmitted: true, reason: { code: 0 } }), "left");
});
