"""``%lm_panel`` and ``%lm_chat``: the widgets as line magics (registered by ``%load_ext lm_magics``)."""

from __future__ import annotations

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from ..errors import LMError
from ..registry import get_registry
from .chat import ChatAssistant
from .panel import CompletionPanel

__all__ = ["WidgetMagics"]


@magics_class
class WidgetMagics(Magics):
    @magic_arguments()
    @argument("--name", "-n", default=None, help="the model to use (default: the session's default model)")
    @argument("-k", type=int, default=5, help="how many next words to show [default: 5]")
    @line_magic
    def lm_panel(self, line: str) -> CompletionPanel:
        """Show a completion panel: type, see the next words, click one to accept it.

        Returns the panel: ``panel = %lm_panel --name poems``; ``panel.value``, ``panel.words``.
        """
        args = _parse(self.lm_panel, line)
        try:
            return CompletionPanel(args.name, registry=get_registry(self.shell), k=args.k)
        except LMError as exc:
            raise UsageError(str(exc)) from None

    @magic_arguments()
    @argument("--name", "-n", default=None, help="the model to answer with (default: the session's default)")
    @line_magic
    def lm_chat(self, line: str) -> ChatAssistant:
        """Show a chat with a model; type /help in it for commands.

        Returns the chat: ``chat = %lm_chat``; ``chat.send("hello")``, ``chat.messages``.
        """
        args = _parse(self.lm_chat, line)
        try:
            return ChatAssistant(args.name, registry=get_registry(self.shell), user_ns=self.shell.user_ns)
        except LMError as exc:
            raise UsageError(str(exc)) from None


def _parse(magic, line: str):
    try:
        return parse_argstring(magic, line)
    except UsageError:
        raise
    except SystemExit:  # pragma: no cover - argparse exits on bad input in some versions
        raise UsageError(f"Bad arguments: {line!r}; see %{magic.__name__}?") from None
