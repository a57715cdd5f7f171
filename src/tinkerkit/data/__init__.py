"""Turning conversations and documents into correct ``tinker.types.Datum`` lists."""

from tinkerkit.data.chat import chat_datum

__all__ = ["chat_datum"]
