"""Themes: what people said in their own words, grouped on the bot's own machine.

`engine.find_themes` is pure: answers in, themes out, with no network, no clock and no
storage; `codebook` holds a coordinator's corrections; `service` reads answers and
codebooks from storage for the digest, a gathering's summary, the CLI and the console.
"""
