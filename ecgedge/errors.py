"""One root exception for everything ecgedge raises on purpose.

Catch `EdgeError` at a CLI boundary: print the message, exit non-zero. The subclasses say
which part of the road failed, so tests and callers can be specific.
"""


class EdgeError(Exception):
    """Root of every error ecgedge raises deliberately."""


class ConfigError(EdgeError):
    """Bad user input: unknown model or target name, bad flag value, bad config file."""


class DataError(EdgeError):
    """Unreadable or unsuitable signal data (wrong rate, shape, missing file)."""


class ModelError(EdgeError):
    """A model, checkpoint or exported artefact that cannot be loaded or does not match."""


class ExportError(EdgeError):
    """The export road failed (conversion, float op left, op list check)."""


class BudgetError(ExportError):
    """A model that cannot fit its target; the message says what overflows and by how much."""


class PackageError(EdgeError):
    """A model package (dist folder) that is incomplete, tampered with or unsigned."""


class ProtocolError(EdgeError):
    """A wire-protocol frame that cannot be decoded (bad COBS, CRC, length, type)."""


class TransportError(EdgeError):
    """A link that cannot be opened or that dropped."""


class DeviceTimeout(TransportError):
    """A device that stopped answering within its deadline."""


class FirmwareError(EdgeError):
    """Code generation, firmware build or emulator failure."""


class GateError(EdgeError):
    """A HIL bench gate was crossed."""
