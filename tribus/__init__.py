"""tribus's porting aid: ``python -m tribus.port script.py`` runs a Lightning program on tribus unchanged."""
