"""The typed error of the launch and join flows: ``LaunchError(code, admin_hint)``.

Every failure a clinician or patient can meet in a launch, a join page or a meeting creation is one of the
codes of :data:`CATALOG`. A code says *what* failed, the admin hint says *how to fix it* (both are safe to
show and to log: never a token, a code, a CSN or a phone number). The HTML error page is rendered in one
place (:func:`lib.visits.pages.error_page`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorInfo:
    """Defaults of one error code: HTTP status, message for the person at the screen, fix for the admin."""

    status: int
    user_message: str
    admin_hint: str


_RETRY = "Please try again in a moment."
_ADMIN = "Please contact your clinic or IT support."

#: Every code the launch, join and meeting code raises, with its defaults.
CATALOG: dict[str, ErrorInfo] = {
    "ISS_MISSING": ErrorInfo(400, f"The video visit could not be started. {_ADMIN}",
                             "The launch URL was opened without an 'iss' parameter. Check the launch URL in the "
                             "Epic integration record: Epic adds iss and launch itself."),
    "LAUNCH_MISSING": ErrorInfo(400, f"The video visit could not be started. {_ADMIN}",
                                "The launch URL was opened without a 'launch' parameter; only the EHR launch "
                                "(from Epic) is supported."),
    "LAUNCH_INVALID": ErrorInfo(400, f"The video visit could not be started. {_ADMIN}",
                                "The launch URL's 'launch' parameter is blank, longer than 4096 characters or "
                                "holds characters a launch token never has; nothing was stored. Epic adds "
                                "launch itself: check the launch URL in the integration record."),
    "RATE_LIMITED": ErrorInfo(429, "Too many attempts from this network. Please wait, then start again.",
                              "This client address made more anonymous launch, callback or join-link requests "
                              "than the limits allow (docs/launch.md \"Rate limits\")."),
    "FRAME_NOT_ALLOWED": ErrorInfo(403, "This page cannot be shown inside this window. Open the video visit "
                                        "from Epic or MyChart, or ask your clinic's IT team.",
                                   "The page was loaded inside a frame of a site that is not one of the "
                                   "environment's frame origins. Add the Epic origin to the environment's frame "
                                   "origins in the configuration portal."),
    "COOKIES_BLOCKED": ErrorInfo(400, "Your browser blocked the cookie this sign-in needs inside this window. "
                                      "Start the visit again from Epic; if this repeats, open it in a new window.",
                                 "The callback arrived in a frame without the launch cookie. The cookie is "
                                 "partitioned (SameSite=None; Secure; Partitioned) so embedded launches work where "
                                 "third-party cookies are blocked; this browser or web view does not keep "
                                 "partitioned cookies (docs/launch.md \"Embedded in Epic\")."),
    "ISS_NOT_ALLOWED": ErrorInfo(403, f"The video visit could not be started. {_ADMIN}",
                                 "The FHIR base URL (iss) of this launch is not registered for any environment. "
                                 "Register it exactly (scheme, host, path, no trailing slash) in the "
                                 "configuration portal: {public}/api/portal/environments"),
    "ENVIRONMENT_NOT_APPROVED": ErrorInfo(403, f"The video visit could not be started. {_ADMIN}",
                                          "This FHIR base URL is configured but not approved: never approved, "
                                          "sent back, or changed (kind or Epic client ID) since its approval. The "
                                          "Epic analyst named for it approves it at {public}/api/portal/approvals"),
    "ENVIRONMENT_DISABLED": ErrorInfo(403, f"The video visit could not be started. {_ADMIN}",
                                      "This environment is disabled in the configuration portal. An admin "
                                      "enables it again at {public}/api/portal/environments"),
    "DISCOVERY_FAILED": ErrorInfo(502, f"The video visit could not be started. {_RETRY}",
                                  "Neither {iss}/.well-known/smart-configuration nor {iss}/metadata answered "
                                  "with a usable document. Check that the FHIR base URL is reachable from the "
                                  "app and that the Epic client ID is correct."),
    "DISCOVERY_INVALID": ErrorInfo(502, f"The video visit could not be started. {_ADMIN}",
                                   "The SMART configuration of the EHR is incomplete, points to another host than "
                                   "the FHIR base URL, or does not offer PKCE S256."),
    "SMART_KEYS_MISSING": ErrorInfo(500, f"The video visit could not be started. {_ADMIN}",
                                    "No signing key is configured for this environment kind: set "
                                    "SMART_PRIVATE_KEYS (test) or SMART_PRIVATE_KEYS_PRODUCTION (production), or "
                                    "their _FILE variants, to a PEM holding an RSA (2048+ bits) or EC P-384 "
                                    "private key."),
    "STATE_MISSING": ErrorInfo(400, f"The sign-in could not be completed. {_ADMIN}",
                               "The callback arrived without 'state' or 'code'. Someone opened the callback URL "
                               "directly, or the EHR dropped the parameters."),
    "STATE_INVALID": ErrorInfo(400, "This sign-in link was already used or has expired. Start the visit again "
                                    "from the EHR.",
                               "The 'state' of the callback is unknown, expired (10 minutes) or already used. A "
                               "reloaded or shared callback URL looks like this."),
    "CALLBACK_ISS_MISMATCH": ErrorInfo(400, f"The sign-in could not be completed. {_ADMIN}",
                                       "The callback carried an 'iss' (RFC 9207) that is not the issuer of the "
                                       "EHR this launch was sent to, or none while that EHR promises one: the "
                                       "answer may come from another authorization server (mix-up attack) and "
                                       "was refused."),
    "STATE_BROWSER_MISMATCH": ErrorInfo(400, "The sign-in was started in another browser window. Start the "
                                             "visit again from the EHR.",
                                        "The callback's state belongs to another browser (launch cookie missing "
                                        "or different). Check that the browser embedded in the EHR keeps "
                                        "cookies for this site (SameSite=Lax)."),
    "EPIC_AUTHORIZE_ERROR": ErrorInfo(403, f"The EHR did not allow the video visit to start. {_ADMIN}",
                                      "The EHR's authorize endpoint answered with an error. Check the client "
                                      "ID, the redirect URI ({public}/api/launch/callback) and the scopes "
                                      "registered for this app in Epic."),
    "EPIC_AUDIENCE_REFUSED": ErrorInfo(403, f"The EHR did not allow the video visit to start. {_ADMIN}",
                                       "Epic refused the authorize request's 'aud', which is the launch's iss: the "
                                       "FHIR base URL registered for the environment. Epic accepts only its own "
                                       "FHIR base URL, exactly (scheme, host, path with its R4 suffix, no trailing "
                                       "slash). Compare the URL at {public}/api/portal/environments with the iss "
                                       "Epic's launch sends."),
    "EPIC_OAUTH_ERROR": ErrorInfo(502, f"The video visit could not be started. {_ADMIN}",
                                  "The EHR's token endpoint refused the request. Check that the app's JWKS URL "
                                  "({public}/api/.well-known/jwks.json for test, .../jwks/production.json for "
                                  "production environments) is registered in Epic and that the "
                                  "client ID matches the environment."),
    "EPIC_UNAVAILABLE": ErrorInfo(503, "The EHR is not answering. Please start the visit again from the EHR.",
                                  "The EHR's OAuth or FHIR endpoint timed out or answered with a server error."),
    "EPIC_THROTTLED": ErrorInfo(503, "The EHR is busy. Please start the visit again from the EHR.",
                                "The EHR's OAuth or FHIR endpoint answered 429 (too many requests). The page says "
                                "when to try again (its Retry-After); if this repeats, ask Epic about the "
                                "client's rate limits."),
    "ID_TOKEN_INVALID": ErrorInfo(502, f"The sign-in could not be verified. {_ADMIN}",
                                  "The id_token from the EHR failed verification (signature, issuer, audience, "
                                  "expiry or nonce). Check the server clock and the EHR's JWKS."),
    "WRONG_LAUNCH_KIND": ErrorInfo(400, f"This link is for another kind of user. {_ADMIN}",
                                   "The signed-in user's fhirUser is of the wrong type for this launch URL: "
                                   "provider launches need a Practitioner, patient launches a Patient or "
                                   "RelatedPerson. Check which integration record uses which URL."),
    "APPOINTMENT_CONTEXT_MISSING": ErrorInfo(400, f"No visit was selected. {_ADMIN}",
                                             "The token response carried no appointment (neither 'appointment' "
                                             "nor an Appointment in 'fhirContext'). Add the appointment to the "
                                             "launch context of the integration record."),
    "PATIENT_CONTEXT_MISSING": ErrorInfo(403, f"This visit could not be opened for you. {_ADMIN}",
                                         "The patient launch's token response names no patient, so the visit "
                                         "cannot be checked against the signed-in patient and no join link is "
                                         "given. Add the patient to the launch context of the MyChart "
                                         "integration record."),
    "PATIENT_MISMATCH": ErrorInfo(403, f"This visit could not be opened for you. {_ADMIN}",
                                  "The patient of the launch (token response 'patient') is not a participant of "
                                  "the launch's Appointment, so no join link is given. The launch context named "
                                  "another patient's visit: check the MyChart integration record's context."),
    "APPOINTMENT_NOT_FOUND": ErrorInfo(404, "This visit could not be found. It may have been cancelled or moved.",
                                       "The appointment could not be read from the EHR, or carries no CSN "
                                       "identifier, or is unknown to this connector."),
    "APPOINTMENT_CANCELLED": ErrorInfo(410, "This visit was cancelled. Please contact your clinic.",
                                       "The appointment is cancelled, deleted or marked as no-show."),
    "ORGANIZER_MISSING": ErrorInfo(500, f"The video visit could not be created. {_ADMIN}",
                                   "No Teams organizer is known for this visit: set the environment's fallback "
                                   "organizer (Entra object ID) in the configuration portal: "
                                   "{public}/api/portal/environments"),
    "GRAPH_NOT_CONFIGURED": ErrorInfo(500, f"The video visit could not be created. {_ADMIN}",
                                      "GRAPH_TENANT_ID, GRAPH_CLIENT_ID and GRAPH_CLIENT_CERT_FILE must all be "
                                      "set."),
    "GRAPH_AUTH_FAILED": ErrorInfo(502, f"The video visit could not be created. {_ADMIN}",
                                   "Entra ID refused the app's certificate credential. Check the certificate "
                                   "uploaded to the app registration and the tenant ID."),
    "GRAPH_CONSENT_MISSING": ErrorInfo(502, f"The video visit could not be created. {_ADMIN}",
                                       "Microsoft Graph answered 401: grant admin consent for the application "
                                       "permission OnlineMeetings.ReadWrite.All."),
    "GRAPH_ACCESS_POLICY_MISSING": ErrorInfo(502, f"The video visit could not be created. {_ADMIN}",
                                             "Microsoft Graph answered 403: the organizer is not covered by an "
                                             "application access policy. Run New-CsApplicationAccessPolicy and "
                                             "Grant-CsApplicationAccessPolicy for this app (changes take up to "
                                             "30 minutes)."),
    "GRAPH_ORGANIZER_NOT_FOUND": ErrorInfo(502, f"The video visit could not be created. {_ADMIN}",
                                           "Microsoft Graph does not know the organizer's object ID. Check the "
                                           "fallback organizer of the environment."),
    "GRAPH_THROTTLED": ErrorInfo(503, f"Too many visits are starting at once. {_RETRY}",
                                 "Microsoft Graph throttled meeting creation (429). The limit is 2,000 meetings "
                                 "per organizer per month: spread organizers if this repeats."),
    "GRAPH_UNAVAILABLE": ErrorInfo(503, f"Microsoft Teams is not answering. {_RETRY}",
                                   "Microsoft Graph timed out or answered with a server error."),
    "LINK_INVALID": ErrorInfo(404, "This visit link is not valid. Please use the latest link your clinic sent "
                                   "you.",
                              "The join link is malformed, was altered, or is unknown."),
    "LINK_EXPIRED": ErrorInfo(410, "This visit link has expired. Please contact your clinic for a new one.",
                              "The join link expired (two hours after the visit's end)."),
    "STORE_UNAVAILABLE": ErrorInfo(503, f"The service is busy. {_RETRY}",
                                   "Cosmos DB is unreachable or throttling."),
    # ---- go-live failures with their own page (docs/launch.md "Errors for people") ----------------------
    "FHIR_VERSION_MISMATCH": ErrorInfo(403, f"The video visit could not be started. {_ADMIN}",
                                       "The launch's FHIR base URL (iss) ends in another FHIR version than the "
                                       "one registered (e.g. .../api/FHIR/DSTU2 while .../api/FHIR/R4 is "
                                       "registered). Register the R4 base URL in Epic's integration record "
                                       "(SMART version R4) or register exactly this URL in the portal."),
    "ENVIRONMENT_NOT_CONFIGURED": ErrorInfo(404, f"The video visit could not be started. {_ADMIN}",
                                            "The launch URL names an environment (env=...) that is not configured. "
                                            "Copy the launch URL again from the environment's integration records "
                                            "in the configuration portal: {public}/api/portal/environments"),
    "TENANT_CONFIG_NOT_FOUND": ErrorInfo(403, f"The video visit could not be started. {_ADMIN}",
                                         "Tenant config not found: the launch came from a FHIR base URL of a test "
                                         "environment through a production launch URL, or the reverse. Each Epic "
                                         "environment must use the integration records (launch URLs) of the "
                                         "matching environment in the configuration portal: "
                                         "{public}/api/portal/environments"),
    "ENVIRONMENT_MISMATCH": ErrorInfo(403, f"The video visit could not be started. {_ADMIN}",
                                      "The launch URL names another environment than the one its FHIR base URL "
                                      "(iss) belongs to. Copy the launch URL from that environment's integration "
                                      "records."),
    "EPIC_KEYS_NOT_REGISTERED": ErrorInfo(502, f"The video visit could not be started. {_ADMIN}",
                                          "Epic refused our client authentication (invalid_client): the client ID "
                                          "is unknown to this Epic environment, or Epic does not have our public "
                                          "key. Register the JWK Set URL of this environment kind for the client "
                                          "ID in Epic ({public}/api/.well-known/jwks.json for test environments, "
                                          "{public}/api/.well-known/jwks/production.json for production), "
                                          "and allow time for Epic to sync keys (up to 29 hours for a cached "
                                          "JWKS)."),
    "EPIC_CLIENT_NOT_MAPPED": ErrorInfo(502, f"The video visit could not be started. {_ADMIN}",
                                        "Epic answered unauthorized_client: the client ID is not activated for this "
                                        "Epic environment or not mapped to a background user. Ask the Epic Client "
                                        "Systems Administrator to activate the client ID and map it to an Epic "
                                        "user."),
    "EPIC_SCOPE_NOT_GRANTED": ErrorInfo(403, f"The video visit could not be started. {_ADMIN}",
                                        "Epic refused the requested scopes (invalid_scope): the app's Epic record "
                                        "must include launch, openid, fhirUser and Appointment.Read (R4)."),
    "LAUNCH_EXPIRED": ErrorInfo(400, "This launch has expired or was already used. Please start the visit again "
                                     "from Epic.",
                                "The launch token, the authorization code or the encrypted link was expired or "
                                "already used (each is single use and short-lived). A reloaded page, a browser "
                                "back button or a slow sign-in looks like this; a clock difference of more than "
                                "a minute between Epic and Azure does too."),
    "LAUNCH_LINK_INVALID": ErrorInfo(400, f"The video visit could not be started. {_ADMIN}",
                                     "The encrypted launch link could not be read: wrong or missing key for this "
                                     "environment (EPIC_CAL_KEYS), a different cipher (AES-256-CBC is expected; "
                                     "AES-128 with a 16-byte key), or a payload without the configured fields. "
                                     "See docs/launch.md \"Encrypted link\"."),
    "LAUNCH_MODE_MISMATCH": ErrorInfo(400, f"The video visit could not be started. {_ADMIN}",
                                      "An encrypted-link launch reached an environment whose launch mode is SMART "
                                      "(or its key is not configured). Choose the launch mode in the portal and "
                                      "copy the matching integration records."),
    "SIGNIN_FAILED": ErrorInfo(502, f"Microsoft 365 sign-in did not complete. {_ADMIN}",
                               "The clinician's one-time Microsoft 365 sign-in failed. Add "
                               "{public}/api/launch/signin as a Web redirect URI of the Entra app registration, "
                               "grant admin consent for the delegated permissions openid and User.Read, and check "
                               "that the clinician's account is in the tenant."),
    "SIGNIN_NEEDS_WINDOW": ErrorInfo(403, "The first time, you sign in once with Microsoft 365, which cannot be "
                                          "shown inside this window. Start this visit once from Epic in a full "
                                          "browser window; later visits open here.",
                                     "The clinician's one-time Microsoft 365 sign-in is needed, the launch runs "
                                     "inside a frame (Microsoft's sign-in pages refuse frames), and the environment "
                                     "has no fallback organizer to go on with. Set a fallback organizer, or have "
                                     "the clinician launch once top-level."),
    "INTERNAL_ERROR": ErrorInfo(500, f"Something went wrong. {_ADMIN}",
                                "An unexpected error; find the correlation ID in the application logs."),
}


class LaunchError(Exception):
    """A launch, join or meeting step failed in a way the person at the screen can be told about.

    Args:
        code: one of :data:`CATALOG` (``ISS_NOT_ALLOWED``, ``STATE_INVALID``, ``EPIC_OAUTH_ERROR``...).
        admin_hint: how to fix it; defaults to the catalog's hint. Never holds a token, code or PHI.
        retry_after: seconds the caller should wait (throttling), when known.

    Attributes:
        status: HTTP status the error page is served with.
        user_message: the sentence shown to the clinician or patient.
    """

    def __init__(self, code: str, admin_hint: str | None = None, *, retry_after: int | None = None) -> None:
        info = CATALOG.get(code, CATALOG["INTERNAL_ERROR"])
        self.code = code
        self.admin_hint = admin_hint or info.admin_hint
        self.status = info.status
        self.user_message = info.user_message
        self.retry_after = retry_after
        super().__init__(f"{code}: {self.admin_hint}")
