"""Browser tests of the coordinators' console: Playwright driving Debian's Chromium."""
