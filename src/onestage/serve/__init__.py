"""`onestage serve`: a detector behind an HTTP API (FastAPI) with a web page to try it.

`app` builds the FastAPI application, `uploads` reads request bodies within a size limit and
decodes them, `runners` run the detector for many concurrent requests off the event loop,
`admission` bounds the predictions in flight, `hosts` refuses foreign Host headers, `limits`
holds the defaults of the limits, and `static/` holds the page (no CDN: it works offline).
"""
