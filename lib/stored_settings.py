"""A stored environment's settings, checked again before use: one rule set and one error for every reader.

The portal refuses a setting that breaks its field's rule (``lib/field_rules.py`` and the types of
:class:`lib.models.EnvironmentConfig`, validated with pydantic). An environment can still hold such a value:
stored before the rule existed, by an older version, or written straight into the store. Every reader of an
environment (the launch and the patient's join, the HL7 intake, the SMS dispatcher, the write-back) calls
:func:`check_usable` before using it (leaving aside settings it never reads: a wrong SMS setting does not stop a
launch) and, on :class:`UnusableSetting`, stops with a message naming the setting to fix in the portal: a page
(launch), problem JSON (join API), an HL7 ``AR`` (intake), a text or write-back ``failed`` with that reason.
Before this, a bogus ``client_assertion_alg`` surfaced as ``SMART_KEYS_MISSING``.

Checking a whole configuration with pydantic takes about a millisecond, so the answer is remembered per
configuration object: the environment repository hands out the same object for its cache's lifetime, so a
reader pays once per cache refresh, not per request.
"""

from __future__ import annotations

import functools
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import TypeAdapter

    from lib.models import EnvironmentConfig

__all__ = ["NOT_FOR_INTAKE", "NOT_FOR_TEXTS", "NOT_FOR_VISITS", "NOT_FOR_WRITEBACK", "SettingProblem",
           "UnusableSetting", "check_usable", "setting_problems", "stored_adapter", "unusable_settings"]


@functools.cache
def stored_adapter() -> TypeAdapter[EnvironmentConfig]:
    """pydantic validation of a whole stored configuration (types, literals, nested records, field rules).
    Built on first use (about 0.1 s), not at import: the HL7 reader imports this module for its error."""
    from pydantic import TypeAdapter

    from lib.models import EnvironmentConfig

    return TypeAdapter(EnvironmentConfig)


@dataclass(frozen=True)
class SettingProblem:
    """One stored setting that breaks its rule: ``setting`` as the portal names it (``client_assertion_alg``,
    ``sms.reminder_offsets_minutes``) and ``message``, the portal's own words for what is accepted."""

    setting: str
    message: str

    def __str__(self) -> str:
        return f"{self.setting}: {self.message}"


class UnusableSetting(ValueError):
    """An environment's stored setting cannot be used: not the request's fault, and repeating the request will
    not help until an administrator corrects the setting in the portal.

    Attributes:
        setting: the first setting to fix; ``message``: what it must be; ``problems``: every one found;
        ``environment_id``: the environment, when known.
    """

    def __init__(self, setting: str, message: str, *, environment_id: str | None = None,
                 problems: tuple[SettingProblem, ...] = ()) -> None:
        self.setting = setting
        self.message = message
        self.environment_id = environment_id
        self.problems = problems or (SettingProblem(setting, message),)
        super().__init__(f"{setting}: {message}")

    @property
    def reason(self) -> str:
        """One line for an HL7 ``AR``, a failed text or write-back: ``portal setting wrong: <setting>: <rule>``
        (plus how many more settings are wrong)."""
        more = len(self.problems) - 1
        return f"portal setting wrong: {self}" + (f" (and {more} more)" if more > 0 else "")

    def admin_hint(self) -> str:
        """What the administrator does, for a launch's error page (``{public}`` is the app's URL)."""
        where = f"environment '{self.environment_id}'" if self.environment_id else "this environment"
        names = ", ".join(dict.fromkeys(p.setting for p in self.problems))
        edit = (f"{{public}}/api/portal/environments/{self.environment_id}/edit" if self.environment_id
                else "{public}/api/portal/environments")
        return (f"The stored settings of {where} break rules the configuration portal enforces ({names}): "
                f"{self}. Correct them at {edit} (saving the form resets a broken value to its default), then "
                "start the visit again.")


def setting_problems(config: EnvironmentConfig) -> tuple[SettingProblem, ...]:
    """Every setting of ``config`` that breaks its field's rule, in field order (empty: usable). Not cached."""
    from pydantic import ValidationError

    try:
        stored_adapter().validate_python(config.to_doc())
    except ValidationError as exc:
        found: list[SettingProblem] = []
        for item in exc.errors():
            path = [str(part) for part in item["loc"] if not isinstance(part, int)]
            message = item["msg"].removeprefix("Value error, ")
            found.append(SettingProblem(".".join(path) or "settings", message))
        return tuple(dict.fromkeys(found))
    except (TypeError, ValueError) as exc:  # a check outside pydantic's (``__post_init__``) refused it
        return (SettingProblem("settings", str(exc)[:200]),)
    return ()


_remembered: dict[int, tuple[SettingProblem, ...]] = {}
_lock = threading.Lock()


def unusable_settings(config: EnvironmentConfig) -> tuple[SettingProblem, ...]:
    """:func:`setting_problems`, remembered for as long as the ``config`` object lives (configurations are
    frozen: the same object always gives the same answer)."""
    key = id(config)
    found = _remembered.get(key)
    if found is not None:
        return found
    found = setting_problems(config)
    with _lock:
        if key not in _remembered:
            _remembered[key] = found
            # Forgotten when the object is collected, before its id can name another object.
            weakref.finalize(config, _remembered.pop, key, None)
    return found


#: Settings a reader does not use (by prefix), so a launch still works while only the texts' or the write-back's
#: settings are wrong; what a reader does use stops it. The intake plans texts, so it reads the SMS settings.
NOT_FOR_VISITS = ("sms.", "writeback_")
NOT_FOR_INTAKE = ("writeback_",)
NOT_FOR_TEXTS = ("writeback_",)
NOT_FOR_WRITEBACK = ("sms.",)


def check_usable(config: EnvironmentConfig, *, ignore: tuple[str, ...] = ()) -> None:
    """Stop when a stored setting of ``config`` breaks its rule (those starting with a prefix in ``ignore``,
    which this reader does not use, aside).

    Raises:
        UnusableSetting: naming the first such setting (and carrying every one that stops this reader).
    """
    found = tuple(p for p in unusable_settings(config) if not p.setting.startswith(ignore))
    if found:
        raise UnusableSetting(found[0].setting, found[0].message, environment_id=config.id, problems=found)
