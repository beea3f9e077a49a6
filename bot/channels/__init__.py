"""Channel adapters: platform event -> Inbound, Outbound -> platform call. No state."""
