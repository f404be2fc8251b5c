// Our API, seen from the page: JSON in and out, no cookies, problems turned into named states.
export class ApiProblem extends Error {
  constructor(status, code) {
    super(code || `HTTP ${status}`);
    this.status = status;
    this.code = code || "";
  }
}

export async function postJson(url, body, { keepalive = false } = {}) {
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      credentials: "omit",
      keepalive,
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiProblem(0, navigator.onLine === false ? "OFFLINE" : "UNREACHABLE");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiProblem(response.status, data.code);
  return data;
}

// The state to show for an API problem (codes from lib/smart/errors.py and lib/visits/join.py).
export function stateOf(problem) {
  switch (problem.code) {
    case "OFFLINE": return "offline";
    case "LINK_INVALID": case "APPOINTMENT_NOT_FOUND": return "invalid";
    case "LINK_EXPIRED": return "expired";
    case "APPOINTMENT_CANCELLED": return "cancelled";
    case "VISIT_TOO_EARLY": return "too_early";
    case "VISIT_OVER": return "over";
    default: return problem.status === 503 || problem.status === 429 ? "busy" : "unreachable";
  }
}
