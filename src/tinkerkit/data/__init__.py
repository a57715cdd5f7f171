"""Turning conversations and documents into correct ``tinker.types.Datum`` lists."""

from tinkerkit.data.chat import chat_datum
from tinkerkit.data.datum import shifted_datum

__all__ = ["chat_datum", "shifted_datum"]
