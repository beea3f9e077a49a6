"""The baseline for benchmarks/inbound.py: the usual way to write this bot.

A python-telegram-bot `ConversationHandler` asking the weekly check-in's
questions, with `PicklePersistence`, behind a webhook. `/start tap-heavy` asks
benchmarks/guides/tap-heavy.yaml's instead, on inline keyboards, each tap handled
the way such bots are usually written: `query.answer()`, then the tapped message's
keyboard edited to show the choice, then the next question sent. It is not part of the
product: it exists to be measured against. Configured by the same environment
variables as `kitchen-table run` (TELEGRAM_BOT_TOKEN, KT_TELEGRAM_API_URL,
KT_PUBLIC_URL, KT_PORT, KT_DATA_DIR).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

from aiohttp import web
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    ConversationHandler,
    MessageHandler,
    PicklePersistence,
    filters,
)

CONSENT, WEEK, HOURS, CHANGED, BETTER = range(5)
TAP_CONSENT, SHIFT, SAFE, NOTICE, CHANGE = range(5, 10)
SECRET = "baseline-secret-token"


def buttons(*options: tuple[str, str], row: int = 3) -> InlineKeyboardMarkup:
    """(label, data) pairs as an inline keyboard, `row` buttons to a row."""
    keys = [InlineKeyboardButton(label, callback_data=data) for label, data in options]
    return InlineKeyboardMarkup([keys[i : i + row] for i in range(0, len(keys), row)])


SHIFTS = {"day": "Day", "evening": "Evening", "night": "Night"}
SAFETY = {str(n): str(n) for n in range(1, 6)}
YES_NO = {"yes": "Yes", "no": "No"}


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    if context.args and context.args[0] == "tap-heavy":
        await update.message.reply_text(  # type: ignore[union-attr]
            "Shift check\nWe keep your answers, but never your name.\nIs that all right with you?",
            reply_markup=buttons(("I agree", "yes"), ("No thanks", "no")),
        )
        return TAP_CONSENT
    await update.message.reply_text(  # type: ignore[union-attr]
        "Weekly check-in\nWe keep your answers, but never your name.\nIs that all right with you?"
    )
    return CONSENT


async def consent(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    if (update.message.text or "").lower() not in ("yes", "y", "ok"):  # type: ignore[union-attr]
        await update.message.reply_text("That's fine. Nothing was kept.")  # type: ignore[union-attr]
        return ConversationHandler.END
    await update.message.reply_text("1 of 5\nHow was your week at work?")  # type: ignore[union-attr]
    return WEEK


async def week(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    text = update.message.text or ""  # type: ignore[union-attr]
    if not text.isdigit() or not 1 <= int(text) <= 5:
        await update.message.reply_text("Please answer with a whole number from 1 to 5.")  # type: ignore[union-attr]
        return WEEK
    context.user_data["week"] = int(text)  # type: ignore[index]
    await update.message.reply_text("2 of 5\nAbout how many hours did you work last week?")  # type: ignore[union-attr]
    return HOURS


async def hours(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    context.user_data["hours"] = update.message.text  # type: ignore[index, union-attr]
    await update.message.reply_text("3 of 5\nDid anything change at work this week?")  # type: ignore[union-attr]
    return CHANGED


async def changed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    context.user_data["changed"] = update.message.text  # type: ignore[index, union-attr]
    await update.message.reply_text(  # type: ignore[union-attr]
        "4 of 4\nWhat is one thing that would make next week better for you?"
    )
    return BETTER


async def better(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    context.user_data["better"] = update.message.text  # type: ignore[index, union-attr]
    await update.message.reply_text("Thank you! See you next week. Take care.")  # type: ignore[union-attr]
    return ConversationHandler.END


async def tapped(update: Update, context: ContextTypes.DEFAULT_TYPE, labels: dict[str, str]) -> str:
    """Answer the tap, keep only the chosen answer on the tapped message; its value."""
    query = update.callback_query
    assert query is not None and query.data is not None
    await query.answer()
    value = query.data if query.data in labels else next(iter(labels))
    await query.edit_message_reply_markup(buttons((f"✓ {labels[value]}", "noop")))
    return value


async def tap_consent(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    value = await tapped(update, context, {"yes": "I agree", "no": "No thanks"})
    chat = update.effective_chat.id  # type: ignore[union-attr]
    if value != "yes":
        await context.bot.send_message(chat, "That's fine. Nothing was kept.")
        return ConversationHandler.END
    await context.bot.send_message(
        chat,
        "1 of 4\nWhich shift did you work most this week?",
        reply_markup=buttons(*((label, key) for key, label in SHIFTS.items())),
    )
    return SHIFT


async def shift(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    context.user_data["shift"] = await tapped(update, context, SHIFTS)  # type: ignore[index]
    await context.bot.send_message(
        update.effective_chat.id,  # type: ignore[union-attr]
        "2 of 4\nHow safe did you feel at work?\n1 = Not at all, 5 = Very",
        reply_markup=buttons(*((label, key) for key, label in SAFETY.items()), row=5),
    )
    return SAFE


async def safe(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    context.user_data["safe"] = int(await tapped(update, context, SAFETY))  # type: ignore[index]
    await context.bot.send_message(
        update.effective_chat.id,  # type: ignore[union-attr]
        "3 of 4\nDid you get your schedule a week ahead?",
        reply_markup=buttons(*((label, key) for key, label in YES_NO.items())),
    )
    return NOTICE


async def notice(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    context.user_data["notice"] = await tapped(update, context, YES_NO)  # type: ignore[index]
    await context.bot.send_message(
        update.effective_chat.id,  # type: ignore[union-attr]
        "4 of 4\nWhat one thing would you change about your shifts?",
    )
    return CHANGE


async def change(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    context.user_data["change"] = update.message.text  # type: ignore[index, union-attr]
    await update.message.reply_text("Thank you! Your answers help everyone on shift.")  # type: ignore[union-attr]
    return ConversationHandler.END


async def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    data = Path(os.environ.get("KT_DATA_DIR", "data"))
    data.mkdir(parents=True, exist_ok=True)
    api = os.environ["KT_TELEGRAM_API_URL"].rstrip("/")
    application = (
        Application.builder()
        .token(os.environ["TELEGRAM_BOT_TOKEN"])
        .base_url(f"{api}/bot")
        .updater(None)
        .persistence(PicklePersistence(data / "baseline.pickle"))
        .build()
    )
    text = filters.TEXT & ~filters.COMMAND
    application.add_handler(
        ConversationHandler(
            entry_points=[CommandHandler("start", start)],
            states={
                CONSENT: [MessageHandler(text, consent)],
                WEEK: [MessageHandler(text, week)],
                HOURS: [MessageHandler(text, hours)],
                CHANGED: [MessageHandler(text, changed)],
                BETTER: [MessageHandler(text, better)],
                TAP_CONSENT: [CallbackQueryHandler(tap_consent)],
                SHIFT: [CallbackQueryHandler(shift)],
                SAFE: [CallbackQueryHandler(safe)],
                NOTICE: [CallbackQueryHandler(notice)],
                CHANGE: [MessageHandler(text, change)],
            },
            fallbacks=[],
            name="checkin",
            persistent=True,
        )
    )

    async def webhook(request: web.Request) -> web.Response:
        if request.headers.get("X-Telegram-Bot-Api-Secret-Token") != SECRET:
            return web.Response(status=403)
        update = Update.de_json(await request.json(), application.bot)
        await application.update_queue.put(update)
        return web.Response()

    app = web.Application()
    app.router.add_post("/telegram", webhook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(os.environ["KT_PORT"])).start()
    async with application:
        await application.start()
        public = os.environ["KT_PUBLIC_URL"].rstrip("/")
        await application.bot.set_webhook(f"{public}/telegram", secret_token=SECRET)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, stop.set)
        await stop.wait()
        await application.stop()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
