"""The browser pages: the landing page, the try-it page and the staff usage dashboard (templates in templates/)."""
