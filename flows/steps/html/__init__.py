"""html.scrape internals."""
