"""The pages in a real browser: Debian's Chromium driven by Playwright, against a real
``remediator serve`` on loopback, real PostgreSQL and a real Redis as the remediation target."""
