"""``fer review``: a local web page to look at what validation flagged and decide, one key each.

- :mod:`fer.review.items`: the flagged samples as one table (pure pandas);
- :mod:`fer.review.store`: the decisions file behind the page (locked, atomic, undo);
- :mod:`fer.review.images`: thumbnails and whole images, from listed files only;
- :mod:`fer.review.app`: the FastAPI app (the only module importing FastAPI).

The decisions themselves (parse, key, apply) are :mod:`fer.validation.decisions`.
"""
