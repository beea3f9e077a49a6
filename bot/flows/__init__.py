"""The functional core: guide models, answer parsing, conditions and the flow engine.

Nothing in this package does I/O, reads the clock or imports channels, storage
or network code: time and input are arguments, and the engine returns events.
"""
