"""html.scrape internals. Step (a Prefect task; ``.fn`` is the plain coroutine function):
``scrape.scrape_page``; ``scrape.scrape`` parses a page already in memory."""
