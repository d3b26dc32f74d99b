"""Node-side daemons: off-consensus asyncio tasks that run inside a validator's perpd process (price feed)."""
