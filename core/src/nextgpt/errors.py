"""Exceptions raised by nextgpt. Each message names the file, field or plugin at fault."""

from __future__ import annotations


class NextGPTError(Exception):
    """Base class of every error nextgpt raises on purpose."""


class ConfigError(NextGPTError, ValueError):
    """A configuration value is invalid; the message names the field, the value and the reason."""


class LicencePolicyError(ConfigError):
    """The configuration's ``licence_policy`` refuses a component; the message names each one,
    its licence and what could replace it."""


class MediaError(NextGPTError, ValueError):
    """A media file is missing, empty, truncated or not what its name says."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class UnknownModalityError(NextGPTError, KeyError):
    """A modality (or placeholder) was asked for that no installed plugin provides."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PluginError(NextGPTError):
    """Base class of plugin problems."""


class PluginLoadError(PluginError):
    """A plugin failed to import or to register; other plugins still load."""

    def __init__(self, plugin: str, distribution: str | None, cause: BaseException) -> None:
        self.where = f"plugin {plugin!r}" + (f" (distribution {distribution})" if distribution else "")
        self.reason = f"{type(cause).__name__}: {cause}"
        super().__init__(f"{self.where} failed to load: {self.reason}")
        self.plugin = plugin
        self.distribution = distribution
        self.cause = cause


class PluginConflictError(PluginError):
    """Two plugins claim the same modality, backend name, signal token or entry-point name.

    ``way_out`` ends the message: how to load only one of them (an allow-list)."""

    def __init__(self, what: str, first: str, second: str, way_out: str = "") -> None:
        super().__init__(f"{what} is claimed by both {first} and {second}{way_out}")
        self.what = what
        self.first = first
        self.second = second
        self.way_out = way_out

    def with_way_out(self, way_out: str) -> PluginConflictError:
        return PluginConflictError(self.what, self.first, self.second, way_out)


class NextGPTWarning(UserWarning):
    """Base class of the warnings nextgpt gives on purpose (the command line prints them as one
    ``warning: ...`` line)."""


class PromptTruncatedWarning(NextGPTWarning):
    """A conversation was longer than the LLM's context: what was dropped is in the message."""


class SkippedRecordWarning(NextGPTWarning):
    """A training record was skipped (``on_bad_record: skip``); the message names file and index."""


class SkippedModalityWarning(NextGPTWarning):
    """A model folder's modality was left out because no installed plugin provides it."""


class RestrictedLicenceWarning(NextGPTWarning):
    """Under ``licence_policy: commercial``, components whose commercial use is restricted: one
    line naming each with its restriction."""


class PluginWarning(NextGPTWarning):
    """Something about the plugins to load is likely a mistake, e.g. an allow-list name that
    no installed plugin has."""
