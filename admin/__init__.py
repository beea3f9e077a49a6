"""The facilitator's and coordinator's side: commands that call the bot's own services."""
