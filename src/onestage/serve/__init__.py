"""`onestage serve`: a detector behind an HTTP API (FastAPI) with a web page to try it.

`app` builds the FastAPI application, `uploads` reads request bodies within a size limit and
decodes them, `runners` run the detector for many concurrent requests off the event loop, and
`static/` holds the page (no CDN: it works offline).
"""
