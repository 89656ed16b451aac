"""The runtime: what runs instances once the engine has chosen its seams.

``Engine`` builds a :class:`Services` bundle and a :class:`Runner`; a run depends on the
bundle only, never on the engine.
"""
