"""The chat's assistant without its widget: what a message means (``grammar``) and the answers that compute
something (``answers``). Neither imports ipywidgets, so both are tested (and usable) without a browser;
``lm_magics.widgets.chat.ChatAssistant`` only renders what they return.
"""
