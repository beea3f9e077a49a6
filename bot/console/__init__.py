"""The coordinators' console: the bot's web pages for coordinators, facilitators and admins.

Served by the bot's own aiohttp server under `/console` (mounted by `bot/app/web.py`
when `KT_CONSOLE=1` or `KT_PUBLIC_URL` is set). Server-rendered jinja2 templates, plain
CSS, no JavaScript framework. How to add a page: /work/notes/console-skeleton.md, and
`bot/console/pages.py`.

- `app.py`: the sub-application: sessions, CSRF, roles re-checked on every request.
- `context.py`: what a page handler gets (`Visit`) and what it may reach (`Services`).
- `pages.py`: how a page module registers its routes and its entry in the navigation.
- `catalog.py`: the page modules the console serves.
- `sessions.py`, `audit.py`: sign-in sessions and the audit log, kept in `records`.
- `strings.py` and `locales/`: the console's words, English and Spanish.
"""
